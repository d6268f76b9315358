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
import torch

from fastsam.errors import InvalidInputError
from fastsam.inference.masks import PrototypeMasks
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


def _clean_plane(plane: np.ndarray, min_region_area: int, outside: bool) -> np.ndarray:
    """SAM's two passes on a uint8 0/1 plane: holes of fewer than ``min_region_area`` pixels filled, then islands
    of fewer removed (the largest kept when all are). ``outside``: the plane is a crop with a margin whose
    background around the mask is large in the image, so it is never a hole."""
    labels, sizes = _components(1 - plane)
    small_holes = np.flatnonzero(sizes < min_region_area)
    small_holes = small_holes[(small_holes != 0) & ((small_holes != labels[0, 0]) if outside else True)]
    if small_holes.size:
        plane = plane.copy()
        plane[np.isin(labels, small_holes)] = 1
    labels, sizes = _components(plane)
    islands = sizes[1:]
    if islands.size and (islands < min_region_area).any():
        keep = np.flatnonzero(islands >= min_region_area) + 1
        if keep.size == 0:
            keep = np.array([int(np.argmax(islands)) + 1])
        plane = np.isin(labels, keep).astype(np.uint8)
    return plane


def remove_small_regions(mask: RunLengthMask, min_region_area: int) -> RunLengthMask:
    """SAM's ``min_mask_region_area`` clean-up of one mask, with the same pixels as SAM's: background regions
    (8-connected) of fewer than ``min_region_area`` pixels are filled, then parts of the mask of fewer pixels are
    removed, keeping the largest when all are small. Works on the mask's box with a one-pixel margin; a mask whose
    box touches the image border, or leaves fewer pixels outside it than the threshold, is decoded alone."""
    min_region_area = _check_area(min_region_area, "min_region_area")
    x1, y1, x2, y2 = mask.bbox()
    if min_region_area == 0 or x2 <= x1:
        return mask
    h, w = mask.height, mask.width
    outside_pixels = h * w - (x2 - x1) * (y2 - y1)
    if x1 == 0 or y1 == 0 or x2 == w or y2 == h or outside_pixels < min_region_area:
        # The background outside the box may be split by the border or be small itself: SAM's rule on the image.
        return RunLengthMask.from_mask(_clean_plane(mask.decode().astype(np.uint8), min_region_area, False) > 0)
    crop = np.zeros((y2 - y1 + 2, x2 - x1 + 2), np.uint8)
    crop[1:-1, 1:-1] = mask.decode_region(x1, y1, x2, y2)
    cleaned = _clean_plane(crop, min_region_area, True)
    return RunLengthMask.from_crop(cleaned[1:-1, 1:-1] > 0, x1, y1, h, w)


def _shifted_areas(renderer: "PrototypeMasks", indices: np.ndarray, shift: float) -> np.ndarray:
    """Areas of the chosen instances' masks thresholded at logit > ``shift`` instead of > 0, assembled as the
    masks are. A constant prototype with coefficient -shift lowers every logit by ``shift``: bilinear weights
    sum to one, so upsampling commutes with the shift and the compiled mask assembly does the rest."""
    protos = np.concatenate([renderer.protos, np.ones((1, *renderer.protos.shape[1:]), np.float32)])
    coefficients = np.concatenate([renderer.coefficients[indices],
                                   np.full((len(indices), 1), -shift, np.float32)], axis=1)
    shifted = PrototypeMasks(torch.from_numpy(protos), torch.from_numpy(coefficients),
                             torch.from_numpy(renderer.image_boxes[indices]),
                             torch.from_numpy(renderer.input_boxes[indices]), renderer.input_size,
                             renderer.image_size, retina=renderer.retina)
    return np.array([m.area for m in shifted.encode_all()], np.int64)


def stability_scores(result: "SegmentationResult", indices: Sequence[int]) -> list[float | None]:
    """SAM's stability score per instance: |logit > +1| / |logit > -1| at the masks' resolution (the masks are
    logit > 0), from the prototypes the result keeps; None for every instance when it keeps none."""
    renderer = result.prototypes
    chosen = np.asarray(indices, np.int64).reshape(-1)
    if renderer is None or chosen.size == 0:
        return [None] * chosen.size
    high = _shifted_areas(renderer, chosen, STABILITY_OFFSET)
    low = _shifted_areas(renderer, chosen, -STABILITY_OFFSET)
    return [float(a) / float(b) if b else 0.0 for a, b in zip(high, low)]


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
