"""Throughput of ``fastsam batch``: the local engine with 1 and 2 workers and the Ray engine, on one machine.

    PYTHONPATH=. python3 benchmarks/batch.py --model ../shared/fixtures/fastsam-s-parity.pt --imgsz 512 \
        --images 256 --json out/bench_batch.json

The images are the coco128-seg photographs from ../shared/data (read there, never copied into the project),
plus mirrored copies to reach ``--images``, written as JPEG to a temporary folder. Each configuration runs the
whole job into a fresh output folder. Two rates are reported:
- job images/s: images / time from the engine's start to the last commit (model loading and, for Ray, starting
  the instance and its actors included);
- after-first images/s: images finished after the first one / time from the first to the last (excludes start-up
  and the first image; Ray returns results a batch at a time, which flatters it by up to a batch per actor).
Prints a markdown table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import write_json  # noqa: E402

import torch  # noqa: E402

from fastsam.batch import run_batch  # noqa: E402
from fastsam.batch.pipeline import available_cores  # noqa: E402

SHARED = Path(os.environ.get("FASTSAM_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def make_images(source: Path, count: int, folder: Path) -> list[Path]:
    photos = sorted(p for p in source.rglob("*.jpg"))
    if not photos:
        raise SystemExit(f"no .jpg images under {source}")
    written = []
    for n in range(count):
        rounds, k = divmod(n, len(photos))
        image = cv2.imread(str(photos[k]))
        if rounds % 2:
            image = cv2.flip(image, 1)
        if rounds >= 2:
            image = cv2.flip(image, 0)
        path = folder / f"{n:05d}_{photos[k].stem}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "fixtures" / "fastsam-s-parity.pt"))
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "coco128-seg" / "images")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--configs", nargs="+", default=["local:1", "local:1:t1", "local:2", "ray:2"],
                        help="engine:workers[:tTHREADS][:nolookahead], e.g. local:1:t1 (default threads: "
                             "cores / workers)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per configuration, round-robin (the machine's load drifts); medians reported")
    parser.add_argument("--json", type=Path, default=Path("out/bench_batch.json"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="fastsam-bench-batch-") as tmp:
        images = Path(tmp) / "images"
        images.mkdir()
        make_images(args.data, args.images, images)
        for config in [c for _ in range(args.repeat) for c in args.configs]:
            engine, workers, *flags = config.split(":")
            workers = int(workers)
            if engine == "ray" and importlib.util.find_spec("ray") is None:  # not imported: see import_ray
                print(f"skipping {config}: ray is not installed", file=sys.stderr)
                continue
            dest = Path(tmp) / f"out-{config.replace(':', '-')}"
            lookahead = 0 if "nolookahead" in flags else 2
            threads = max(1, available_cores() // workers)
            for flag in flags:
                if flag.startswith("t") and flag[1:].isdigit():
                    threads = int(flag[1:])
            load_before = os.getloadavg()[0]
            marks: list[tuple[float, int]] = []

            def mark(done: int, errors: int) -> None:
                if not marks:
                    marks.append((time.perf_counter(), done))
                marks[1:] = [(time.perf_counter(), done)]

            start = time.perf_counter()
            summary = run_batch(images, dest, args.model, engine=engine, workers=workers, threads=threads,
                                imgsz=args.imgsz, shard_size=args.shard_size, lookahead=lookahead, callback=mark)
            wall = time.perf_counter() - start
            (t_first, n_first), (t_last, n_last) = marks[0], marks[-1]
            row = {
                "config": config, "engine": engine, "workers": workers, "threads_per_worker": threads,
                "lookahead": lookahead,
                "images": summary.inputs, "records": summary.records, "errors": summary.errors,
                "job_seconds": round(summary.seconds, 2), "wall_seconds": round(wall, 2),
                "job_images_per_s": round(summary.images_per_s, 3),
                "first_image_seconds": round(t_first - start, 2),
                "after_first_images_per_s":
                    round((n_last - n_first) / (t_last - t_first), 3) if t_last > t_first else None,
                "load_avg_1min_before": round(load_before, 2), "load_avg_1min_after": round(os.getloadavg()[0], 2),
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            shutil.rmtree(dest)
    runs, rows = rows, []
    for config in dict.fromkeys(r["config"] for r in runs):
        same = [r for r in runs if r["config"] == config]
        row = dict(same[0])
        for key in ("job_seconds", "wall_seconds", "job_images_per_s", "first_image_seconds",
                    "after_first_images_per_s", "load_avg_1min_before"):
            values = [r[key] for r in same if r[key] is not None]
            row[key] = round(statistics.median(values), 3) if values else None
        row["runs"] = len(same)
        row["job_images_per_s_each"] = [r["job_images_per_s"] for r in same]
        rows.append(row)
    report = {
        "model": args.model, "imgsz": args.imgsz, "images": args.images, "shard_size": args.shard_size,
        "source": str(args.data), "repeat": args.repeat, "cores": available_cores(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "rows": rows, "runs": runs,
    }
    print(f"{args.images} images (coco128 + mirrored copies), {Path(args.model).name}, imgsz {args.imgsz}, "
          f"retina masks, {available_cores()} cores, shard size {args.shard_size}")
    print(f"medians of {args.repeat} run(s) per configuration, configurations interleaved\n")
    print("| engine | workers x threads | decode/encode overlap | job images/s (each run) | after-first images/s "
          "| first image s | job s | load avg before |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        each = ", ".join(f"{v:.2f}" for v in r["job_images_per_s_each"])
        print(f"| {r['engine']} | {r['workers']} x {r['threads_per_worker']} | {'yes' if r['lookahead'] else 'no'} | "
              f"{r['job_images_per_s']:.2f} ({each}) | {r['after_first_images_per_s'] or 0:.2f} | "
              f"{r['first_image_seconds']:.1f} | {r['job_seconds']:.1f} | {r['load_avg_1min_before']:.1f} |")
    write_json(args.json, report)


if __name__ == "__main__":
    main()
