"""The bundled model's acceptance bars (issue 17) for one or more models, side by side: BSDS500 val edges (ODS),
CamVid val and tiny_coco val2017 box AP and mask AR@1000, GrabCut one-click mIoU and NoC@85.

    python benchmarks/model_quality.py --model old=fastsam-default --model new=runs/x/weights/last.safetensors:0.2
    python benchmarks/model_quality.py --model new=PATH --max-images 20      # a quick look on fewer images

``NAME=MODEL[:CONF]``: MODEL is a zoo name or checkpoint path; CONF the confidence for the everything-mode tasks
(edges, clicks; default: the model's own, 0.15 for the bundled model, else 0.4). The AP / AR tasks use conf 0.001,
NMS IoU 0.7 and up to 1000 instances (COCO's AR@1000). Each task keeps its per-image results in OUT/NAME/TASK, so
an interrupted run resumes. Prints a markdown table and writes OUT/quality.json. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report import write_json  # noqa: E402

DATA = Path(os.environ.get("FASTSAM_SHARED", REPO.parent / "shared")) / "data"
# (column, goal, True when higher is better): the bars of issue 17
BARS = {
    "edges ODS": (0.60, True),
    "camvid box AP": (0.12, True),
    "camvid mask AR@1000": (0.40, True),
    "tiny_coco box AP": (0.05, True),
    "tiny_coco mask AR@1000": (0.30, True),
    "grabcut mIoU@1": (0.50, True),
    "grabcut NoC@85": (12.0, False),
}


def parse_model(spec: str) -> tuple[str, str, float]:
    """``NAME=MODEL[:CONF]`` -> (name, model, conf)."""
    from fastsam.model.zoo import default_conf

    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise SystemExit(f"--model expects NAME=MODEL[:CONF], got {spec!r}")
    model, colon, conf_text = rest.rpartition(":")
    if colon and not Path(rest).exists():
        try:
            return name, model, float(conf_text)
        except ValueError:
            pass
    return name, rest, default_conf(rest)


def coco_task(model: str, data: str, imgsz: int, max_images: int | None) -> dict[str, float]:
    from fastsam.train.validate import validate_checkpoint

    return validate_checkpoint(model, data, imgsz=imgsz, conf=0.001, iou=0.7, max_det=1000, limit=max_images,
                               progress=True)


def measure(name: str, model: str, conf: float, out: Path, imgsz: int, max_images: int | None) -> dict:
    from fastsam.eval.clicks import run_clicks_benchmark
    from fastsam.eval.edges import run_edges_benchmark

    row: dict = {"name": name, "model": model, "conf": conf, "imgsz": imgsz, "seconds": {}}

    def timed(task: str, work):
        start = time.perf_counter()
        value = work()
        row["seconds"][task] = round(time.perf_counter() - start, 1)
        return value

    edges = timed("edges", lambda: run_edges_benchmark(
        "fastsam", DATA / "bsds500", out / name / "edges", split="val", model=model, imgsz=imgsz, conf=conf,
        iou=0.9, max_images=max_images, progress=True))
    row["edges ODS"] = edges["metrics"]["ODS"]["F"]
    for label, data in (("camvid", DATA / "camvid:val"), ("tiny_coco", DATA / "tiny_coco" / "tiny_coco:val2017")):
        metrics = timed(label, lambda: coco_task(model, str(data), imgsz, max_images))
        row[f"{label} box AP"] = metrics["box/AP"]
        row[f"{label} mask AR@1000"] = metrics["mask/AR@1000"]
        row[f"{label} metrics"] = metrics
    clicks = timed("clicks", lambda: run_clicks_benchmark(
        DATA / "grabcut", out / name / "clicks", model=model, imgsz=imgsz, conf=conf, iou=0.9,
        max_images=max_images, progress=True))
    row["grabcut mIoU@1"] = clicks["miou"][0]
    row["grabcut NoC@85"] = clicks["NoC@85"]
    return row


def table(rows: list[dict]) -> str:
    head = "| model | conf | " + " | ".join(BARS) + " |"
    lines = [head, "|" + "---|" * (len(BARS) + 2),
             "| goal | | " + " | ".join(f"{'>=' if up else '<='} {goal:g}" for goal, up in BARS.values()) + " |"]
    for row in rows:
        cells = []
        for column, (goal, up) in BARS.items():
            value = row[column]
            met = value >= goal if up else value <= goal
            cells.append(f"{value:.3f}{'' if met else ' ✗'}" if column != "grabcut NoC@85" else
                         f"{value:.2f}{'' if met else ' ✗'}")
        lines.append(f"| {row['name']} | {row['conf']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="NAME=MODEL[:CONF], repeatable")
    parser.add_argument("--imgsz", type=int, default=1024, help="network input (default 1024, segment's)")
    parser.add_argument("--max-images", type=int, help="only the first N images of each set")
    parser.add_argument("--out", default="out/quality", help="output folder (default out/quality)")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: this benchmark needs ../shared/data")
    out = Path(args.out)
    rows = [measure(*parse_model(spec), out, args.imgsz, args.max_images) for spec in args.model]
    print(table(rows))
    write_json(out / "quality.json", {"imgsz": args.imgsz, "max_images": args.max_images, "bars": BARS, "rows": rows},
               indent=1)


if __name__ == "__main__":
    main()
