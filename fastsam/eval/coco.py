"""COCO-style scoring with pycocotools' COCOeval: AP and AR of detections against a COCO instances file.

:func:`evaluate_coco` returns plain floats keyed by name (documented there); :func:`result_to_detections` turns
a segmentation (all instances, or a prompt's selection) into COCO result dicts. Everything is class-agnostic by
default (every category becomes 1, "object"), as FastSAM finds objects without classes.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Sequence

import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.prompts.selection import Selection

IOU_TYPES = ("segm", "bbox")
AREA_NAMES = ("all", "small", "medium", "large")  # COCOeval's default area ranges, in this order


def _check_ground_truth(ground_truth: object) -> dict:
    if not isinstance(ground_truth, dict) or not isinstance(ground_truth.get("images"), list) \
            or not isinstance(ground_truth.get("annotations"), list):
        raise InvalidInputError("ground_truth must be a COCO instances dict with 'images' and 'annotations' lists")
    return ground_truth


def _check_detections(detections: object, image_ids: set[int], iou_type: str) -> list[dict]:
    if not isinstance(detections, (list, tuple)):
        raise InvalidInputError(f"detections must be a list of COCO result dicts, got {type(detections).__name__}")
    needed = ("image_id", "score", "segmentation" if iou_type == "segm" else "bbox")
    for k, det in enumerate(detections):
        if not isinstance(det, dict) or any(key not in det for key in needed):
            raise InvalidInputError(f"detection {k} must be a dict with {', '.join(needed)}")
        if det["image_id"] not in image_ids:
            raise InvalidInputError(f"detection {k} is for image_id {det['image_id']!r}, which the ground truth lacks")
    return list(detections)


def _coco_from_dict(dataset: dict) -> Any:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _agnostic(ground_truth: dict) -> dict:
    """A copy of the ground truth in which every annotation has category 1."""
    dataset = dict(ground_truth)
    dataset["annotations"] = [dict(a, category_id=1) for a in ground_truth["annotations"]]
    dataset["categories"] = [{"id": 1, "name": "object"}]
    return dataset


def _results_dataset(ground_truth: dict, detections: list[dict], iou_type: str, class_agnostic: bool) -> dict:
    """The detections as a COCO dataset, with the areas COCOeval filters by: the mask's for segm, the box's for
    bbox (pycocotools' loadRes would take the box area for masks too, and fails on an empty list)."""
    from pycocotools import mask as coco_mask

    annotations = []
    for k, det in enumerate(detections):
        ann = dict(det, id=k + 1, iscrowd=0)
        if class_agnostic:
            ann["category_id"] = 1
        if iou_type == "segm":
            rle = det["segmentation"]
            if isinstance(rle.get("counts"), str):
                rle = dict(rle, counts=rle["counts"].encode("ascii"))
            ann["segmentation"] = rle
            ann["area"] = float(coco_mask.area(rle))
        else:
            x, y, w, h = (float(v) for v in det["bbox"])
            ann["area"] = w * h
        annotations.append(ann)
    return {"images": ground_truth["images"], "categories": ground_truth.get("categories", [{"id": 1}]),
            "annotations": annotations}


def _mean_valid(values: np.ndarray) -> float:
    """Mean over entries that COCOeval filled in (it marks undefined ones -1); -1 when none is defined."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def evaluate_coco(ground_truth: dict, detections: list[dict], iou_type: str = "segm",
                  max_dets: tuple[int, ...] = (10, 100, 1000), class_agnostic: bool = True,
                  image_ids: Sequence[int] | None = None) -> dict[str, float]:
    """Score COCO results (dicts with image_id, category_id, score, bbox [x, y, w, h] and/or segmentation
    RLE) against a COCO instances dict, with pycocotools' COCOeval (IoU 0.50:0.95, crowd regions ignored).

    Returns, each a float in [0, 1] (or -1 when no ground truth falls in that bucket, COCOeval's convention;
    images without detections count as misses):

    - ``AP``, ``AP50``, ``AP75``, ``AP_small``, ``AP_medium``, ``AP_large``: average precision with up to
      ``max(max_dets)`` detections per image;
    - for every k in ``max_dets``: ``AR@k`` and ``AR_small@k``, ``AR_medium@k``, ``AR_large@k``: average recall
      with the k best-scoring detections per image.

    ``class_agnostic`` maps every category (ground truth and detections) to 1. ``image_ids`` restricts the
    evaluation to those images (default: every image of the ground truth).
    """
    _check_ground_truth(ground_truth)
    if iou_type not in IOU_TYPES:
        raise InvalidInputError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    if not isinstance(max_dets, (tuple, list)) or not max_dets or any(
            isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in max_dets):
        raise InvalidInputError(f"max_dets must be a non-empty sequence of positive integers, got {max_dets!r}")
    known = {img["id"] for img in ground_truth["images"]}
    detections = _check_detections(detections, known, iou_type)
    from pycocotools.cocoeval import COCOeval

    gt_dict = _agnostic(ground_truth) if class_agnostic else ground_truth
    gt = _coco_from_dict(gt_dict)
    dt = _coco_from_dict(_results_dataset(gt_dict, detections, iou_type, class_agnostic))
    max_dets = tuple(sorted(int(k) for k in max_dets))
    evaluator = COCOeval(gt, dt, iou_type)
    evaluator.params.maxDets = list(max_dets)
    if image_ids is not None:
        unknown = set(image_ids) - known
        if unknown:
            raise InvalidInputError(f"image_ids not in the ground truth: {sorted(unknown)[:5]}")
        evaluator.params.imgIds = sorted(set(image_ids))
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    # precision: (iou thresholds, recall points, categories, areas, max dets);
    # recall: (iou thresholds, categories, areas, max dets).
    precision, recall = evaluator.eval["precision"], evaluator.eval["recall"]
    iou_thresholds = evaluator.params.iouThrs
    at = {0.5: int(np.argmin(np.abs(iou_thresholds - 0.5))), 0.75: int(np.argmin(np.abs(iou_thresholds - 0.75)))}
    last = len(max_dets) - 1
    metrics = {"AP": _mean_valid(precision[:, :, :, 0, last]),
               "AP50": _mean_valid(precision[at[0.5], :, :, 0, last]),
               "AP75": _mean_valid(precision[at[0.75], :, :, 0, last])}
    for a, area in enumerate(AREA_NAMES[1:], start=1):
        metrics[f"AP_{area}"] = _mean_valid(precision[:, :, :, a, last])
    for m, k in enumerate(max_dets):
        metrics[f"AR@{k}"] = _mean_valid(recall[:, :, 0, m])
        for a, area in enumerate(AREA_NAMES[1:], start=1):
            metrics[f"AR_{area}@{k}"] = _mean_valid(recall[:, :, a, m])
    return metrics


def result_to_detections(result: object, image_id: int, with_masks: bool = True) -> list[dict]:
    """COCO results for one image, category 1: ``bbox`` [x, y, w, h] pixels, ``score``, and with ``with_masks``
    a compressed-RLE ``segmentation``.

    ``result`` is a :class:`~fastsam.result.SegmentationResult` (every instance; bbox = the detector's box) or a
    :class:`~fastsam.prompts.selection.Selection` (the chosen masks; bbox = the mask's tight box).
    """
    if isinstance(image_id, bool) or not isinstance(image_id, (int, np.integer)):
        raise InvalidInputError(f"image_id must be an integer, got {image_id!r:.80}")
    if isinstance(result, Selection):
        masks, scores = result.masks, np.asarray(result.scores, np.float64)
        boxes = result.boxes.astype(np.float64)
    elif hasattr(result, "rles") and hasattr(result, "boxes") and hasattr(result, "scores"):
        masks, scores = result.rles, np.asarray(result.scores, np.float64)
        boxes = np.asarray(result.boxes, np.float64).reshape(-1, 4)
    else:
        raise InvalidInputError(f"expected a SegmentationResult or Selection, got {type(result).__name__}")
    detections = []
    for k, mask in enumerate(masks):
        x1, y1, x2, y2 = boxes[k]
        det = {"image_id": int(image_id), "category_id": 1, "score": float(scores[k]),
               "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
        if with_masks:
            det["segmentation"] = mask.to_coco()
        detections.append(det)
    return detections
