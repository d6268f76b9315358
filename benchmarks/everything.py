"""End-to-end everything mode, file in -> COCO RLE JSON on disk, with a per-stage breakdown and peak RSS.

    python benchmarks/everything.py --model ../shared/fixtures/fastsam-s-parity.pt \
        ../shared/fixtures/images/sa_8776.jpg --repeat 3 --json out/bench_everything.json

Prints a markdown table (median over --repeat runs after one warm-up) and writes the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import write_json  # noqa: E402

from fastsam.inference.predictor import Predictor  # noqa: E402
from fastsam.io.export import write_coco_json  # noqa: E402

STAGES = ("decode", "letterbox", "network", "nms", "masks", "encode")


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_once(predictor: Predictor, image: Path, out_dir: Path) -> tuple[dict[str, float], int]:
    start = time.perf_counter()
    result = predictor(image, keep_image=False)
    t_encode = time.perf_counter()
    write_coco_json(result.everything(), out_dir / f"{image.stem}.json", file_name=image.name)
    stages = dict(result.timings)
    stages["encode"] = time.perf_counter() - t_encode
    stages["total"] = time.perf_counter() - start
    return stages, len(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--imgsz", type=int, default=1024)
    parser.add_argument("--conf", type=float, default=None, help="default: the model's (0.4; bundled model 0.15)")
    parser.add_argument("--iou", type=float, default=None, help="NMS IoU, default: the model's (0.9; bundled 0.7)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=Path("out/bench_everything.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    predictor = Predictor.from_model(args.model, imgsz=args.imgsz, conf=args.conf, iou=args.iou)
    conf, iou = predictor.conf, predictor.iou
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for image in args.images:
            run_once(predictor, image, Path(tmp))  # warm-up
            runs = [run_once(predictor, image, Path(tmp)) for _ in range(args.repeat)]
            medians = {k: statistics.median(r[0][k] for r in runs) for k in (*STAGES, "total")}
            rows.append({"image": image.name, "instances": runs[0][1], "seconds": medians})
    report = {
        "model": str(args.model), "imgsz": args.imgsz, "conf": conf, "iou": iou, "repeat": args.repeat,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "peak_rss_mb": round(peak_rss_mb(), 1), "rows": rows,
    }
    header = "| image | instances | " + " | ".join(STAGES) + " | total | post-processing / network |"
    print(header)
    print("|" + "---|" * (len(STAGES) + 4))
    for row in rows:
        s = row["seconds"]
        post = s["nms"] + s["masks"] + s["encode"]
        cells = " | ".join(f"{s[k] * 1000:.0f} ms" for k in STAGES)
        print(f"| {row['image']} | {row['instances']} | {cells} | {s['total']:.2f} s | {post / s['network']:.2f} |")
    print(f"\nconf {conf:g}, NMS IoU {iou:g}; peak RSS {report['peak_rss_mb']:.0f} MB, "
          f"torch threads {report['threads']}")
    write_json(args.json, report)


if __name__ == "__main__":
    main()
