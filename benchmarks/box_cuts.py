"""How much of a model's mask boundary is a straight cut along the mask's own box: the rectangles of issue 17.

    python benchmarks/box_cuts.py --model default=fastsam-default --model run3=/path/last.safetensors:0.15

YOLOv8 crops each mask to its predicted box, so a mask still positive at its box edge ends in a straight line
there. For each instance (everything mode on the first ``--max-images`` BSDS500 val images) this counts the mask
pixels on each side of its tight bounding box that is not the image border, as a share of the mask's boundary
pixels, and the worst side's covered fraction. Boxes are binned by their long side in network-input pixels, which
shows the box-range cap of a model trained at a smaller size (see docs/training/campaign.md). Prints a markdown
table and writes JSON (default out/box_cuts.json). Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report import write_json  # noqa: E402

DATA = Path(os.environ.get("FASTSAM_SHARED", REPO.parent / "shared")) / "data"
SIZE_BINS = (0, 128, 384, 768, 900, 10**6)


def instance_cuts(mask: np.ndarray, box: tuple[int, int, int, int], image_size: tuple[int, int]
                  ) -> tuple[int, int, float]:
    """(boundary pixels, pixels on box sides away from the image border, worst such side's covered fraction)
    for a boolean ``mask`` cropped to its tight ``box`` (x1, y1, x2, y2) in an image of (height, width)."""
    x1, y1, x2, y2 = box
    height, width = image_size
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    boundary = int(np.count_nonzero(mask & ~eroded.astype(bool)))
    inside_image = (y1 > 0, y2 < height, x1 > 0, x2 < width)
    sides = [line for line, inside in zip((mask[0], mask[-1], mask[:, 0], mask[:, -1]), inside_image) if inside]
    # The two corner pixels of a side belong to the tight box of any mask; only a longer run is a cut.
    on_sides = sum(max(int(np.count_nonzero(line)) - 2, 0) for line in sides)
    worst = max((np.count_nonzero(line) / line.size for line in sides), default=0.0)
    return boundary, on_sides, float(worst)


def measure(name: str, model: str, conf: float, imgsz: int, max_images: int) -> dict:
    from fastsam.eval.edges import bsds_images
    from fastsam.inference.predictor import Predictor
    from fastsam.model.zoo import load_model

    predictor = Predictor(load_model(model, progress=False), imgsz=imgsz, conf=conf, iou=0.9)
    boundary = on_sides = 0
    per_instance = []  # (box long side in input pixels, worst side fraction)
    for _, image_path, _ in bsds_images(DATA / "bsds500", "val")[:max_images]:
        result = predictor(image_path, keep_image=False)
        scale = imgsz / max(result.image_size)
        for rle in result.rles:
            if rle.area == 0:
                continue
            x1, y1, x2, y2 = rle.bbox()
            counts = instance_cuts(rle.decode_region(x1, y1, x2, y2).astype(bool), (x1, y1, x2, y2),
                                   result.image_size)
            boundary += counts[0]
            on_sides += counts[1]
            per_instance.append((max(x2 - x1, y2 - y1) * scale, counts[2]))
    table = np.array(per_instance).reshape(-1, 2)
    bins = []
    for low, high in zip(SIZE_BINS[:-1], SIZE_BINS[1:]):
        chosen = table[(table[:, 0] >= low) & (table[:, 0] < high), 1]
        bins.append({"box_long_side": [low, high], "instances": int(chosen.size),
                     "cut_over_half": float((chosen > 0.5).mean()) if chosen.size else None})
    return {"name": name, "model": model, "conf": conf, "imgsz": imgsz, "images": max_images,
            "instances": len(per_instance), "boundary_on_box_cuts": on_sides / max(boundary, 1),
            "largest_box": float(table[:, 0].max()) if len(table) else 0.0, "bins": bins}


def main() -> None:
    from benchmarks.model_quality import parse_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=MODEL[:CONF]")
    parser.add_argument("--imgsz", type=int, default=1024)
    parser.add_argument("--max-images", type=int, default=25)
    parser.add_argument("--json", type=Path, default=REPO / "out" / "box_cuts.json")
    args = parser.parse_args()
    if not (DATA / "bsds500").is_dir():
        sys.exit(f"needs BSDS500 in {DATA} (set FASTSAM_SHARED)")
    rows = [measure(*parse_model(spec), args.imgsz, args.max_images) for spec in args.model]
    labels = [f"{low}-{high if high < 10**6 else 'max'}" for low, high in zip(SIZE_BINS[:-1], SIZE_BINS[1:])]
    print(f"first {args.max_images} BSDS500 val images, imgsz {args.imgsz}; per box-size bin (input px): "
          "instances / share with a side more than half cut\n")
    print("| model | conf | instances | boundary on box cuts | largest box (px) | " + " | ".join(labels) + " |")
    print("|---|---|---|---|---|" + "---|" * len(labels))
    for row in rows:
        cells = [f"{b['instances']} / {b['cut_over_half']:.2f}" if b["instances"] else "0" for b in row["bins"]]
        print(f"| {row['name']} | {row['conf']:g} | {row['instances']} | {row['boundary_on_box_cuts']:.3f} | "
              f"{row['largest_box']:.0f} | " + " | ".join(cells) + " |")
    write_json(args.json, {"rows": rows})


if __name__ == "__main__":
    main()
