"""Box recall of large regions: does a model box a region whole, on street scenes and on natural images?

    python benchmarks/region_recall.py --model run10=campaign/run10.safetensors:0.15 [--model ...]

Everything mode (conf from NAME=MODEL[:CONF], NMS IoU ``--iou``, FastSAM's 0.9 by default) on CamVid val (every
instance) and BSDS500 val (annotator 0's regions of at least 100 px, as training reads them). A ground-truth
region counts as found when some predicted box overlaps its box at IoU >= ``--match-iou``. Regions are binned by
their longer side as a share of the image's, so the table shows whether the large "stuff" regions (sky, sea,
sand: the README picture) come out as one box or as blocks. Prints a markdown table and writes JSON (default
out/region_recall.json). Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report import write_json  # noqa: E402

DATA = Path(os.environ.get("FASTSAM_SHARED", REPO.parent / "shared")) / "data"
SHARE_BINS = (0.0, 0.25, 0.5, 0.75, 1.01)
BSDS_MIN_AREA = 100  # BsdsSource's default: the regions training sees


def camvid_regions(max_images: int | None) -> Iterator[tuple[Path, np.ndarray, tuple[int, int]]]:
    """(image, (N, 4) xyxy ground-truth boxes, (height, width)) of CamVid val."""
    from fastsam.eval.datasets import load_coco_set

    dataset = load_coco_set(DATA / "camvid" / "annotations" / "instances_val.json", DATA / "camvid" / "val",
                            max_images)
    sizes = {img["id"]: (img["height"], img["width"]) for img in dataset.ground_truth["images"]}
    for image_id, path in dataset.images:
        xywh = np.array([a["bbox"] for a in dataset.annotations_of(image_id)], dtype=np.float64).reshape(-1, 4)
        yield path, np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1), sizes[image_id]


def bsds_regions(max_images: int | None) -> Iterator[tuple[Path, np.ndarray, tuple[int, int]]]:
    """(image, (N, 4) xyxy boxes of annotator 0's regions, (height, width)) of BSDS500 val."""
    from fastsam.eval.edges import bsds_images
    from fastsam.train.data.bsds import read_bsds_segmentations, region_windows

    for _, image_path, truth_path in bsds_images(DATA / "bsds500", "val")[:max_images]:
        labels = read_bsds_segmentations(truth_path)[0]
        boxes = [(cols.start, rows.start, cols.stop, rows.stop)
                 for _, (rows, cols) in region_windows(labels, BSDS_MIN_AREA)]
        yield image_path, np.array(boxes, dtype=np.float64).reshape(-1, 4), labels.shape


SETS = {"camvid val": camvid_regions, "bsds500 val": bsds_regions}


def best_overlaps(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(N,) the highest box IoU of each ground-truth box (N, 4) with any predicted box (M, 4), xyxy (NMS's IoU)."""
    import torch

    from fastsam.inference.nms import box_iou

    if not len(predicted):
        return np.zeros(len(truth))
    candidates = torch.from_numpy(predicted)
    return np.array([float(box_iou(torch.from_numpy(box), candidates).max()) for box in truth])


def measure(name: str, model: str, conf: float, imgsz: int, iou: float, match_iou: float,
            max_images: int | None) -> dict:
    from fastsam.inference.predictor import Predictor
    from fastsam.model.zoo import load_model

    predictor = Predictor(load_model(model, progress=False), imgsz=imgsz, conf=conf, iou=iou)
    row: dict = {"name": name, "model": model, "conf": conf, "imgsz": imgsz, "iou": iou, "sets": {}}
    for set_name, regions in SETS.items():
        shares, found = [], []
        for image_path, truth, (height, width) in regions(max_images):
            result = predictor(image_path, keep_image=False)
            extent = np.maximum((truth[:, 2] - truth[:, 0]) / width, (truth[:, 3] - truth[:, 1]) / height)
            shares.append(extent)
            found.append(best_overlaps(truth, np.asarray(result.boxes, dtype=np.float64).reshape(-1, 4)) >= match_iou)
        share, hit = np.concatenate(shares), np.concatenate(found)
        bins = []
        for low, high in zip(SHARE_BINS[:-1], SHARE_BINS[1:]):
            chosen = hit[(share >= low) & (share < high)]
            bins.append({"share": [low, min(high, 1.0)], "regions": int(chosen.size),
                         "recall": float(chosen.mean()) if chosen.size else None})
        row["sets"][set_name] = bins
    return row


def main() -> None:
    from benchmarks.model_quality import parse_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=MODEL[:CONF]")
    parser.add_argument("--imgsz", type=int, default=1024)
    parser.add_argument("--iou", type=float, default=0.9, help="NMS IoU (FastSAM's 0.9)")
    parser.add_argument("--match-iou", type=float, default=0.7, help="box IoU at which a region counts as found")
    parser.add_argument("--max-images", type=int, default=None, help="first N images of each set (default: all)")
    parser.add_argument("--json", type=Path, default=REPO / "out" / "region_recall.json")
    args = parser.parse_args()
    if not 0 < args.match_iou <= 1 or not 0 < args.iou <= 1:
        parser.error("--iou and --match-iou must be in (0, 1]")
    missing = [name for name in ("camvid", "bsds500") if not (DATA / name).is_dir()]
    if missing:
        sys.exit(f"needs {', '.join(missing)} in {DATA} (set FASTSAM_SHARED)")
    rows = [measure(*parse_model(spec), args.imgsz, args.iou, args.match_iou, args.max_images)
            for spec in args.model]
    labels = [f"{low:.0%}-{min(high, 1):.0%}" for low, high in zip(SHARE_BINS[:-1], SHARE_BINS[1:])]
    print(f"box recall at IoU {args.match_iou:g} by the region's longer side / the image's (regions in brackets); "
          f"imgsz {args.imgsz}, NMS IoU {args.iou:g}\n")
    print("| model | conf | set | " + " | ".join(labels) + " |")
    print("|---|---|---|" + "---|" * len(labels))
    for row in rows:
        for set_name, bins in row["sets"].items():
            cells = [f"{b['recall']:.3f} ({b['regions']})" if b["regions"] else "- (0)" for b in bins]
            print(f"| {row['name']} | {row['conf']:g} | {set_name} | " + " | ".join(cells) + " |")
    write_json(args.json, {"match_iou": args.match_iou, "rows": rows})


if __name__ == "__main__":
    main()
