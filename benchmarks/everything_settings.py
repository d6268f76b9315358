"""Everything-mode settings for one model: edges ODS and GrabCut clicks across a grid of confidence and NMS IoU
thresholds, and how good the masks under the first click could be (issue 17; docs/training/campaign.md).

    python benchmarks/everything_settings.py --model runs/x/weights/last.safetensors --max-images 25
    python benchmarks/everything_settings.py --model fastsam-default --conf 0.1 0.15 0.25 --iou 0.7 0.9

For each (conf, iou): BSDS500 val edges ODS, GrabCut mIoU after 1 and 3 clicks and NoC@85 (FastSAM's merge rule,
as ``fastsam bench clicks``), and at the first click the IoU of the best single mask holding the click and of
the best mask of all. When the best mask is good but the merge is not, larger regions holding the click spoil
it; when the best mask is poor, the object was not segmented at that confidence. Prints a markdown table and
writes JSON (default out/everything_settings.json). Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report import write_json  # noqa: E402

DATA = Path(os.environ.get("FASTSAM_SHARED", REPO.parent / "shared")) / "data"


def best_masks_at_click(masks: Iterable[np.ndarray], click: tuple[int, int], truth: np.ndarray,
                        ignore: np.ndarray | None = None) -> tuple[float, float, int]:
    """(IoU of the best mask holding ``click`` (x, y), IoU of the best mask of all, how many masks hold the click)
    for boolean (H, W) ``masks`` against ``truth``; IoUs are 0 when no mask qualifies. ``masks`` is read once, one
    mask at a time, so a generator keeps a single full-size mask in memory."""
    from fastsam.eval.clicks import masked_iou

    x, y = click
    best_holding, best, holding = 0.0, 0.0, 0
    for mask in masks:
        iou = masked_iou(mask, truth, ignore)
        best = max(best, iou)
        if mask[y, x]:
            best_holding, holding = max(best_holding, iou), holding + 1
    return best_holding, best, holding


def first_click_oracle(model: str, conf: float, iou: float, imgsz: int, max_images: int | None) -> dict:
    """Mean :func:`best_masks_at_click` over GrabCut at the benchmark's first click."""
    from fastsam.eval.clicks import next_click
    from fastsam.eval.datasets import load_interactive_set, read_interactive_mask
    from fastsam.eval.store import make_predictor

    predictor = make_predictor(model, imgsz=imgsz, conf=conf, iou=iou, max_det=300)
    rows = []
    for sample in load_interactive_set(DATA / "grabcut", max_images):
        truth, ignore = read_interactive_mask(sample.mask, sample.instance)
        result = predictor(sample.image, keep_image=False)
        x, y, _ = next_click(truth, np.zeros_like(truth), ignore)
        rows.append(best_masks_at_click((rle.decode().astype(bool) for rle in result.rles), (x, y), truth, ignore))
    holding, best, count = np.array(rows, np.float64).reshape(-1, 3).mean(0)
    return {"best holding click": float(holding), "best of all": float(best), "masks holding click": float(count)}


def measure(model: str, conf: float, iou: float, imgsz: int, max_images: int | None, out: Path) -> dict:
    from fastsam.eval.clicks import run_clicks_benchmark
    from fastsam.eval.edges import run_edges_benchmark

    folder = out / f"conf{conf}_iou{iou}"
    edges = run_edges_benchmark("fastsam", DATA / "bsds500", folder / "edges", split="val", model=model,
                                imgsz=imgsz, conf=conf, iou=iou, max_images=max_images, progress=False)
    clicks = run_clicks_benchmark(DATA / "grabcut", folder / "clicks", model=model, imgsz=imgsz, conf=conf,
                                  iou=iou, max_images=max_images, progress=False)
    return {"conf": conf, "iou": iou, "edges ODS": edges["metrics"]["ODS"]["F"], "grabcut mIoU@1": clicks["miou"][0],
            "grabcut mIoU@3": clicks["miou"][min(2, len(clicks["miou"]) - 1)], "grabcut NoC@85": clicks["NoC@85"],
            **first_click_oracle(model, conf, iou, imgsz, max_images)}


def table(rows: list[dict]) -> str:
    from fastsam.eval.store import markdown_table

    headers = list(rows[0]) if rows else []
    return markdown_table(headers, [[row[h] for h in headers] for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="zoo name or checkpoint path")
    parser.add_argument("--conf", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.25, 0.35])
    parser.add_argument("--iou", type=float, nargs="+", default=[0.7, 0.9])
    parser.add_argument("--imgsz", type=int, default=1024, help="network input (default 1024, segment's)")
    parser.add_argument("--max-images", type=int, help="only the first N images of each set")
    parser.add_argument("--out", default="out/everything_settings", help="output folder")
    args = parser.parse_args()
    if not (DATA / "bsds500").is_dir() or not (DATA / "grabcut").is_dir():
        raise SystemExit(f"needs {DATA}/bsds500 and {DATA}/grabcut")
    out = Path(args.out)
    rows = []
    for iou in args.iou:
        for conf in args.conf:
            rows.append(measure(args.model, conf, iou, args.imgsz, args.max_images, out))
            print(f"conf {conf} iou {iou}: ODS {rows[-1]['edges ODS']:.3f}, mIoU@1 {rows[-1]['grabcut mIoU@1']:.3f}",
                  file=sys.stderr)
    print(table(rows))
    write_json(out / "everything_settings.json",
               {"model": args.model, "imgsz": args.imgsz, "max_images": args.max_images, "rows": rows}, indent=1)


if __name__ == "__main__":
    main()
