"""A result as SAM's automatic mask generator gives it (a list of dicts), SAM's small-region clean-up, and
supervision ``Detections``.

Record fields, as ``SamAutomaticMaskGenerator.generate``: ``segmentation`` ((H, W) bool, or an RLE dict: see
:data:`OUTPUT_MODES`), ``area`` (pixels), ``bbox`` (XYWH as SAM computes it: inclusive max corner, so ``w`` is
the pixel width minus one), ``predicted_iou`` (FastSAM has no IoU head: the detection confidence),
``stability_score`` (SAM's: the IoU of the mask logits thresholded at +1 and -1; computed when the result keeps
its prototypes, else None), ``point_coords`` ([[x, y]], a pixel of the mask: FastSAM is not prompted by a grid
point) and ``crop_box`` (the whole image, XYWH).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.rle import RunLengthMask

if TYPE_CHECKING:
    from fastsam.result import SegmentationResult

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
#: SAM's stability offset: the mask logits are thresholded at +/- this value.
STABILITY_OFFSET = 1.0


def _check_area(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)) \
            or not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"{name} must be a number of pixels >= 0, got {value!r:.80}")
    return int(math.ceil(value))


def _components(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of a uint8 plane (as SAM): (label plane, sizes per label; label 0 is the rest)."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    return labels, stats[:, cv2.CC_STAT_AREA]


def remove_small_regions(mask: RunLengthMask, min_region_area: int) -> RunLengthMask:
    """SAM's ``min_mask_region_area`` clean-up of one mask: holes (background regions enclosed by the mask) of
    fewer than ``min_region_area`` pixels are filled, then islands (8-connected parts of the mask) of fewer
    pixels are removed, keeping the largest island when all are small. Works on the mask's box (one pixel of
    margin), never on the full image."""
    min_region_area = _check_area(min_region_area, "min_region_area")
    x1, y1, x2, y2 = mask.bbox()
    if min_region_area == 0 or x2 <= x1:
        return mask
    crop = np.zeros((y2 - y1 + 2, x2 - x1 + 2), np.uint8)
    crop[1:-1, 1:-1] = mask.decode_region(x1, y1, x2, y2)
    # Holes: background components other than the one around the mask (which holds the margin's corner).
    labels, sizes = _components(1 - crop)
    outside = labels[0, 0]
    small_holes = np.flatnonzero(sizes < min_region_area)
    small_holes = small_holes[(small_holes != 0) & (small_holes != outside)]
    if small_holes.size:
        crop[np.isin(labels, small_holes)] = 1
    labels, sizes = _components(crop)
    islands = sizes[1:]
    if islands.size and (islands < min_region_area).any():
        keep = np.flatnonzero(islands >= min_region_area) + 1
        if keep.size == 0:
            keep = np.array([int(np.argmax(islands)) + 1])
        crop = np.isin(labels, keep).astype(np.uint8)
    return RunLengthMask.from_crop(crop[1:-1, 1:-1].astype(bool), x1, y1, mask.height, mask.width)


def stability_scores(result: "SegmentationResult", indices: Sequence[int]) -> list[float | None]:
    """SAM's stability score per instance: |logit > +1| / |logit > -1| over the instance's box (its mask is
    zero outside it), from the prototypes the result keeps; None for every instance when it keeps none."""
    renderer = result.prototypes
    if renderer is None:
        return [None] * len(indices)
    high = 1.0 / (1.0 + math.exp(-STABILITY_OFFSET))  # thresholds on the probabilities the renderer gives
    low = 1.0 - high
    scores: list[float | None] = []
    for n in indices:
        probabilities, _, _ = renderer.probability_crop(int(n))
        union = int((probabilities > low).sum())
        scores.append(float((probabilities > high).sum()) / union if union else 0.0)
    return scores


def _inside_point(mask: RunLengthMask) -> list[list[float]]:
    """[[x, y]] of a pixel of the mask (the middle of its middle run); the image centre when it is empty."""
    if mask.starts.size == 0:
        return [[mask.width / 2.0, mask.height / 2.0]]
    k = mask.starts.size // 2
    flat = (int(mask.starts[k]) + int(mask.ends[k]) - 1) // 2
    x, y = divmod(flat, mask.height)
    return [[float(x), float(y)]]


def _segmentation(mask: RunLengthMask, output_mode: str) -> Any:
    if output_mode == "binary_mask":
        return mask.decode()
    if output_mode == "uncompressed_rle":
        return {"size": [mask.height, mask.width], "counts": mask.counts().astype(np.int64).tolist()}
    return mask.to_coco()


def sam_records(result: "SegmentationResult", output_mode: str = "binary_mask", min_mask_region_area: float = 0,
                min_area: float = 0, indices: Sequence[int] | None = None) -> list[dict]:
    """SAM automatic-mask-generator records of ``result``'s instances (all, or ``indices``), in order.

    output_mode: 'binary_mask' ((H, W) bool per record: N full masks, as SAM), 'uncompressed_rle' or
    'coco_rle' (compact). min_mask_region_area: SAM's clean-up (see :func:`remove_small_regions`; 0 = off).
    min_area: drop records whose mask (after clean-up) has fewer pixels. Unlike SAM, cleaned masks are not
    re-run through box NMS: FastSAM's instances already are.
    """
    if output_mode not in OUTPUT_MODES:
        raise InvalidInputError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {output_mode!r}")
    min_region = _check_area(min_mask_region_area, "min_mask_region_area")
    min_pixels = _check_area(min_area, "min_area")
    chosen = np.arange(len(result)) if indices is None else np.asarray(indices, np.int64).reshape(-1)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= len(result)):
        raise InvalidInputError(f"instance indices must lie in [0, {len(result)}), got {chosen.tolist()[:8]}")
    h, w = result.image_size
    records = []
    for n, stability in zip(chosen, stability_scores(result, chosen)):
        mask = remove_small_regions(result.rles[n], min_region) if min_region else result.rles[n]
        area = mask.area
        if area < min_pixels:
            continue
        x1, y1, x2, y2 = mask.bbox()
        records.append({
            "segmentation": _segmentation(mask, output_mode),
            "area": int(area),
            "bbox": [x1, y1, max(x2 - 1 - x1, 0), max(y2 - 1 - y1, 0)],
            "predicted_iou": float(result.scores[n]),
            "point_coords": _inside_point(mask),
            "stability_score": stability,
            "crop_box": [0, 0, w, h],
        })
    return records


def to_supervision(result: "SegmentationResult") -> Any:
    """``supervision.Detections`` of every instance: detection boxes (xyxy), confidences, class 0 and (N, H, W)
    bool masks (supervision keeps full masks). Needs the ``compat`` extra (``pip install
    "fastsam-torch[compat]"``)."""
    try:
        import supervision
    except ImportError as exc:
        from fastsam.prompts.text import MissingDependencyError

        raise MissingDependencyError('to_supervision needs supervision: pip install "fastsam-torch[compat]"') from exc
    return supervision.Detections(xyxy=result.boxes.astype(np.float32).reshape(-1, 4), mask=result.masks,
                                  confidence=result.scores.astype(np.float32),
                                  class_id=np.zeros(len(result), dtype=int))
