"""Box-prompted instance segmentation: each box (a ground-truth box, or a detector's box from a COCO results
JSON) selects one FastSAM instance (``result.prompt(boxes=...)``, best mask-vs-box IoU); the chosen masks are
scored with COCO mask AP and, with ground-truth boxes, the mean IoU against each box's own mask.

Scores for AP: with ground-truth boxes, the chosen instance's confidence; with detections, the detector's
score (the protocol of the SAM and FastSAM papers, where the detector decides what and how sure). Categories
are the boxes' (class-aware AP, as the papers with ViTDet boxes). Crowd annotations are never prompts; COCOeval
ignores them. The network runs once per image; everything-mode settings are FastSAM's (conf 0.4, IoU 0.9).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.eval.coco import evaluate_coco
from fastsam.eval.datasets import annotation_rle, load_coco_set
from fastsam.eval.store import (ResultCache, Stopwatch, check_max_images, make_predictor, markdown_table,
                                model_name, run_cached, write_task_outputs)
from fastsam.rle import RunLengthMask

TASK = "boxes"
SIZE_LIMITS = (32 ** 2, 96 ** 2)  # COCO's small / medium / large area bounds, in pixels


def _load_detections(path: str | Path, min_score: float) -> dict[int, list[dict]]:
    """COCO results JSON (list of {image_id, category_id, bbox, score}) grouped by image, score >= min_score."""
    path = Path(path)
    try:
        detections = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read detections {path}: {exc}") from exc
    if not isinstance(detections, list):
        raise InvalidInputError(f"{path} must hold a list of COCO results")
    grouped: dict[int, list[dict]] = {}
    for k, det in enumerate(detections):
        if not isinstance(det, dict) or any(key not in det for key in ("image_id", "bbox", "score")):
            raise InvalidInputError(f"detection {k} in {path} needs image_id, bbox and score")
        if det["score"] >= min_score:
            grouped.setdefault(int(det["image_id"]), []).append(det)
    return grouped


def _size_name(area: float) -> str:
    return "small" if area < SIZE_LIMITS[0] else "medium" if area < SIZE_LIMITS[1] else "large"


def prompt_boxes(result: Any, boxes_xywh: np.ndarray) -> list[tuple[RunLengthMask, float]]:
    """For each [x, y, w, h] box, the chosen instance's mask and confidence (an empty mask and 0 when the
    image has no instance or the box is degenerate)."""
    h, w = result.image_size
    chosen: list[tuple[RunLengthMask, float]] = []
    for x, y, bw, bh in boxes_xywh:
        x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))
        if len(result) == 0 or x2 <= x1 or y2 <= y1:
            chosen.append((RunLengthMask.empty(h, w), 0.0))
            continue
        selection = result.prompt(boxes=[[x1, y1, x2, y2]])
        chosen.append((selection.masks[0], selection.scores[0]))
    return chosen


def run_boxes_benchmark(annotations: str | Path, out_dir: str | Path, *, model: Any, images: str | Path | None = None,
                        detections: str | Path | None = None, min_score: float = 0.0, imgsz: int = 1024,
                        conf: float = 0.4, iou: float = 0.9, max_det: int = 300, retina: bool = True,
                        device: str = "cpu", max_images: int | None = None, progress: bool = True) -> dict:
    """Run the box-prompt task; write ``out_dir/boxes.json`` and ``boxes.md``; return the summary: ``mask``
    (COCO mask AP metrics, see :func:`fastsam.eval.coco.evaluate_coco`), and with ground-truth boxes
    ``mean_iou`` (over every non-crowd instance) and ``mean_iou_small/medium/large`` (by annotated area)."""
    max_images = check_max_images(max_images)
    if not isinstance(min_score, (int, float)) or not 0.0 <= min_score <= 1.0:
        raise InvalidInputError(f"min_score must be in [0, 1], got {min_score!r}")
    dataset = load_coco_set(annotations, images, max_images)
    boxes_from = "ground truth" if detections is None else str(Path(detections).resolve())
    by_image = None if detections is None else _load_detections(detections, min_score)
    settings = {"annotations": str(Path(annotations).resolve()), "boxes": boxes_from, "min_score": min_score,
                "model": model_name(model), "imgsz": imgsz, "conf": conf, "iou": iou, "max_det": max_det,
                "retina": retina}
    predictor = make_predictor(model, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=retina, device=device)
    cache = ResultCache(out_dir, TASK, settings)
    sizes = {img["id"]: (img["height"], img["width"]) for img in dataset.ground_truth["images"]}
    clock = Stopwatch()

    from pycocotools import mask as coco_mask

    def segment(item: tuple[int, Path]) -> dict:
        image_id, path = item
        result = predictor(path, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=retina, keep_image=False)
        if by_image is None:
            prompts = [a for a in dataset.annotations_of(image_id) if not a.get("iscrowd", 0)]
        else:
            prompts = by_image.get(image_id, [])
        boxes = np.array([p["bbox"] for p in prompts], np.float64).reshape(-1, 4)
        out, ious = [], []
        for prompt, (mask, confidence) in zip(prompts, prompt_boxes(result, boxes)):
            rle = mask.to_coco()
            score = confidence if by_image is None else float(prompt["score"])
            x1, y1, x2, y2 = mask.bbox()
            out.append({"image_id": image_id, "category_id": int(prompt.get("category_id", 1)),
                        "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": score,
                        "segmentation": rle})
            if by_image is None:
                truth = annotation_rle(prompt, *sizes[image_id])
                ours = dict(rle, counts=rle["counts"].encode("ascii"))
                ious.append({"iou": float(coco_mask.iou([ours], [truth], [0])[0][0]), "area": float(prompt["area"])})
        return {"image_id": image_id, "detections": out, "ious": ious}

    records, computed = run_cached(dataset.images, lambda item: str(item[0]), segment, cache, progress, TASK)
    detections_all = [det for record in records for det in record["detections"]]
    image_ids = [image_id for image_id, _ in dataset.images]
    summary: dict = {"task": TASK, "model": model_name(model), "settings": settings, "images": len(image_ids),
                     "computed_images": computed, "wall_s": clock.seconds(),
                     "prompts": len(detections_all),
                     "mask": evaluate_coco(dataset.ground_truth, detections_all, "segm", (1, 10, 100),
                                           class_agnostic=False, image_ids=image_ids)}
    if by_image is None:
        ious = [entry for record in records for entry in record["ious"]]
        summary["mean_iou"] = float(np.mean([e["iou"] for e in ious])) if ious else None
        for size in ("small", "medium", "large"):
            picked = [e["iou"] for e in ious if _size_name(e["area"]) == size]
            summary[f"mean_iou_{size}"] = float(np.mean(picked)) if picked else None
    return write_task_outputs(out_dir, TASK, summary, boxes_markdown(summary))


def boxes_markdown(summary: dict) -> str:
    """The summary as a markdown table: mask AP columns, then mean IoU when measured."""
    columns = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"]
    headers, row = list(columns), [summary["mask"][c] for c in columns]
    if "mean_iou" in summary:
        headers += ["mIoU", "mIoU_small", "mIoU_medium", "mIoU_large"]
        row += [summary["mean_iou"]] + [summary[f"mean_iou_{s}"] for s in ("small", "medium", "large")]
    boxes = summary["settings"]["boxes"]
    return (f"# Box-prompted instance segmentation ({summary['images']} images, {summary['prompts']} boxes from "
            f"{boxes}, model {summary['model']})\n\n" + markdown_table(["boxes"] + headers, [[boxes] + row])
            + f"\nSettings {summary['settings']}; wall time {summary['wall_s']} s.\n")
