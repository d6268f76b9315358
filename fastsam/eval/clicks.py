"""Click-based interactive segmentation with the standard simulated-click protocol (as RITM / f-BRS / SimpleClick
evaluate NoC): mIoU after 1..20 clicks and NoC@85/90 on the standard sets as RITM / f-BRS package them (GrabCut,
Berkeley, DAVIS, COCO_MVal, SBD; see :func:`fastsam.eval.datasets.load_interactive_set`).

Each click goes where the current prediction is most wrong: among the false-negative pixels (object, not
predicted) and the false-positive pixels (predicted, not object), ignore pixels excluded, the one farthest from
the boundary of its error region (L2 distance transform; the image border counts as boundary). The click is
positive when that farthest false negative is strictly deeper than the farthest false positive, else negative.
The first click (empty prediction) is thus the object's most interior point. IoU ignores the ignore label.

The prediction for a click sequence is FastSAM's point rule on the cached everything-mode result (the merge
rule: instances holding a positive click are added, those holding a negative click erased, largest first), so
the network runs once per image. Once a prediction has no error left, further clicks change nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.eval.datasets import load_interactive_set, read_interactive_mask
from fastsam.eval.store import (ResultCache, Stopwatch, check_max_images, make_predictor, markdown_table,
                                model_name, run_cached, write_task_outputs)

TASK = "clicks"
MAX_CLICKS = 20
NOC_THRESHOLDS = (0.85, 0.90)


def _depth(region: np.ndarray) -> np.ndarray:
    """(H, W) float32 L2 distance of each pixel of ``region`` to the nearest pixel outside it (or outside the
    image, hence the zero border)."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def next_click(truth: np.ndarray, prediction: np.ndarray,
               ignore: np.ndarray | None = None) -> tuple[int, int, bool] | None:
    """The next simulated click (x, y, positive) for boolean (H, W) masks, or None when nothing is wrong."""
    valid = ~ignore if ignore is not None else np.ones_like(truth, bool)
    missed_depth = _depth(truth & ~prediction & valid)
    extra_depth = _depth(~truth & prediction & valid)
    deepest_missed, deepest_extra = float(missed_depth.max(initial=0)), float(extra_depth.max(initial=0))
    if deepest_missed == 0 and deepest_extra == 0:
        return None
    positive = deepest_missed > deepest_extra
    depth = missed_depth if positive else extra_depth
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)  # the first deepest pixel in row-major order
    return int(x), int(y), bool(positive)


def masked_iou(prediction: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """IoU of two boolean (H, W) masks over the pixels not ignored; 1 when both are empty there."""
    valid = ~ignore if ignore is not None else np.ones_like(truth, bool)
    union = np.count_nonzero((prediction | truth) & valid)
    if union == 0:
        return 1.0
    return np.count_nonzero(prediction & truth & valid) / union


def simulate_clicks(predict: Callable[[np.ndarray, np.ndarray], np.ndarray], truth: np.ndarray,
                    ignore: np.ndarray | None = None,
                    max_clicks: int = MAX_CLICKS) -> tuple[list[float], list[list[int]]]:
    """Click ``max_clicks`` times. ``predict(points (K, 2) xy, labels (K,) 1/0) -> (H, W) bool``.
    Returns (IoU after each click, the clicks as [x, y, label])."""
    if truth.ndim != 2 or truth.dtype != bool:
        raise InvalidInputError(f"truth must be a 2-D boolean mask, got {truth.dtype} {truth.shape}")
    if ignore is not None and ignore.shape != truth.shape:
        raise InvalidInputError(f"ignore mask {ignore.shape} differs from the truth {truth.shape}")
    if isinstance(max_clicks, bool) or not isinstance(max_clicks, int) or max_clicks < 1:
        raise InvalidInputError(f"max_clicks must be a positive integer, got {max_clicks!r}")
    prediction = np.zeros_like(truth)
    clicks: list[list[int]] = []
    ious: list[float] = []
    for _ in range(max_clicks):
        click = next_click(truth, prediction, ignore)
        if click is not None:
            x, y, positive = click
            clicks.append([x, y, int(positive)])
            points = np.array([c[:2] for c in clicks], np.float64)
            labels = np.array([c[2] for c in clicks], np.int64)
            prediction = np.asarray(predict(points, labels), bool)
            if prediction.shape != truth.shape:
                raise InvalidInputError(f"predict returned a {prediction.shape} mask for a {truth.shape} image")
        ious.append(masked_iou(prediction, truth, ignore))
    return ious, clicks


def number_of_clicks(ious: list[float], threshold: float) -> int:
    """NoC: the first click count whose IoU reaches ``threshold``; len(ious) when it never does."""
    for k, value in enumerate(ious, start=1):
        if value >= threshold:
            return k
    return len(ious)


def summarize_clicks(per_image: list[list[float]]) -> dict:
    """mIoU after each click (``miou``: list, index k-1 for k clicks), NoC@85/90 means and how many images
    never reached each threshold (``failures@85/90``)."""
    curves = np.array(per_image, np.float64).reshape(len(per_image), -1) if per_image else np.zeros((0, 0))
    summary: dict[str, Any] = {"miou": [float(v) for v in curves.mean(0)] if len(curves) else []}
    for threshold in NOC_THRESHOLDS:
        name = f"{round(threshold * 100)}"
        noc = [number_of_clicks(list(c), threshold) for c in curves]
        summary[f"NoC@{name}"] = float(np.mean(noc)) if noc else None
        summary[f"failures@{name}"] = int(sum(c[-1] < threshold for c in curves))
    return summary


def run_clicks_benchmark(data_root: str | Path, out_dir: str | Path, *, model: Any, max_clicks: int = MAX_CLICKS,
                         imgsz: int = 1024, conf: float = 0.4, iou: float = 0.9, max_det: int = 300,
                         retina: bool = True, device: str = "cpu", max_images: int | None = None,
                         progress: bool = True) -> dict:
    """Run the click task on an interactive set (GrabCut, Berkeley, DAVIS, COCO_MVal or SBD layout); write
    ``out_dir/clicks.json`` and ``clicks.md``; return the summary (see :func:`summarize_clicks`, plus settings,
    images and wall_s)."""
    max_images = check_max_images(max_images)
    if isinstance(max_clicks, bool) or not isinstance(max_clicks, int) or max_clicks < 1:
        raise InvalidInputError(f"max_clicks must be a positive integer, got {max_clicks!r}")
    samples = load_interactive_set(data_root, max_images)
    settings = {"data": str(Path(data_root).resolve()), "model": model_name(model), "max_clicks": max_clicks,
                "imgsz": imgsz, "conf": conf, "iou": iou, "max_det": max_det, "retina": retina, "rule": "merge"}
    predictor = make_predictor(model, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=retina, device=device)
    cache = ResultCache(out_dir, TASK, settings)
    clock = Stopwatch()

    def click_through(sample: Any) -> dict:
        truth, ignore = read_interactive_mask(sample.mask, sample.instance)
        result = predictor(sample.image, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=retina,
                           keep_image=False)
        if result.image_size != truth.shape:
            raise InvalidInputError(f"{sample.mask} is {truth.shape[::-1]} but {sample.image} is "
                                    f"{result.image_size[::-1]}")

        def predict(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
            return result.prompt(points=points, labels=labels).merged().decode()

        ious, clicks = simulate_clicks(predict, truth, ignore, max_clicks)
        return {"name": sample.name, "ious": ious, "clicks": clicks, "instances": len(result)}

    records, computed = run_cached(samples, lambda s: s.name, click_through, cache, progress, TASK)
    summary = {"task": TASK, "model": model_name(model), "settings": settings, "images": len(records),
               "computed_images": computed, "wall_s": clock.seconds(),
               **summarize_clicks([r["ious"] for r in records])}
    return write_task_outputs(out_dir, TASK, summary, clicks_markdown(summary))


def clicks_markdown(summary: dict) -> str:
    """NoC and mIoU after 1, 3, 5, 10 and 20 clicks as a markdown table."""
    picks = [k for k in (1, 3, 5, 10, 20) if k <= len(summary["miou"])]
    headers = ["NoC@85", "NoC@90", "failures@90"] + [f"mIoU@{k}" for k in picks]
    row = [summary["NoC@85"], summary["NoC@90"], summary["failures@90"]] + [summary["miou"][k - 1] for k in picks]
    return (f"# Interactive segmentation ({summary['images']} images, model {summary['model']}, FastSAM merge "
            f"rule)\n\n" + markdown_table(headers, [row])
            + f"\nSettings {summary['settings']}; wall time {summary['wall_s']} s.\n")
