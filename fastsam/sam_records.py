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


def _fill_small_holes(plane: np.ndarray, min_region_area: int,
                      outside: Sequence[tuple[np.ndarray, int]]) -> np.ndarray | None:
    """Fill the background regions of a uint8 0/1 plane smaller than ``min_region_area`` (SAM's "holes" pass).
    ``outside``: (margin pixels, pixels they stand for) for each part of the image outside a crop, so that regions
    reaching the margin count their true size. None when such a region is small (it spreads beyond the crop)."""
    labels, sizes = _components(1 - plane)
    sizes = sizes.astype(np.int64)
    for margin, pixels in outside:
        sizes[labels[margin][0]] += pixels - int(margin.sum())
    small = np.flatnonzero(sizes < min_region_area)
    small = small[small != 0]  # label 0: the mask itself
    if not small.size:
        return plane
    if any(labels[margin][0] in small for margin, _ in outside):
        return None
    filled = plane.copy()
    filled[np.isin(labels, small)] = 1
    return filled


def _remove_small_islands(plane: np.ndarray, min_region_area: int) -> np.ndarray:
    """Remove the parts of the mask smaller than ``min_region_area``, keeping the largest when all are (SAM's
    "islands" pass)."""
    labels, sizes = _components(plane)
    islands = sizes[1:]
    if not islands.size or (islands >= min_region_area).all():
        return plane
    keep = np.flatnonzero(islands >= min_region_area) + 1
    if keep.size == 0:
        keep = np.array([int(np.argmax(islands)) + 1])
    return np.isin(labels, keep).astype(np.uint8)


def _outside_parts(shape: tuple[int, int], pads: tuple[int, int, int, int], box: tuple[int, int, int, int],
                   size: tuple[int, int]) -> list[tuple[np.ndarray, int]]:
    """The connected parts of the image outside a box, each as (its margin pixels in the padded crop of ``shape``,
    its pixel count). Margins are on the sides where the box leaves the image border (``pads``: top, bottom,
    left, right); the outside is one part unless only two opposite sides are open (two bands)."""
    top, bottom, left, right = pads
    x1, y1, x2, y2 = box
    h, w = size

    def strip(rows: slice, cols: slice) -> np.ndarray:
        margin = np.zeros(shape, bool)
        margin[rows, cols] = True
        return margin

    if (top, bottom, left, right) == (1, 1, 0, 0):
        return [(strip(slice(0, 1), slice(None)), y1 * w), (strip(slice(-1, None), slice(None)), (h - y2) * w)]
    if (top, bottom, left, right) == (0, 0, 1, 1):
        return [(strip(slice(None), slice(0, 1)), x1 * h), (strip(slice(None), slice(-1, None)), (w - x2) * h)]
    if not any(pads):
        return []
    margin = np.ones(shape, bool)
    margin[top:shape[0] - bottom, left:shape[1] - right] = False
    return [(margin, h * w - (x2 - x1) * (y2 - y1))]


def remove_small_regions(mask: RunLengthMask, min_region_area: int) -> RunLengthMask:
    """SAM's ``min_mask_region_area`` clean-up of one mask, with the same pixels as SAM's: background regions
    (8-connected) of fewer than ``min_region_area`` pixels are filled, then parts of the mask of fewer pixels are
    removed, keeping the largest when all are small. Works on the mask's box with a one-pixel margin standing for
    the image outside it; only when that outside is itself a small region is the whole mask decoded."""
    min_region_area = _check_area(min_region_area, "min_region_area")
    x1, y1, x2, y2 = mask.bbox()
    if min_region_area == 0 or x2 <= x1:
        return mask
    h, w = mask.height, mask.width
    pads = (int(y1 > 0), int(y2 < h), int(x1 > 0), int(x2 < w))
    top, bottom, left, right = pads
    crop = np.zeros((y2 - y1 + top + bottom, x2 - x1 + left + right), np.uint8)
    crop[top:top + y2 - y1, left:left + x2 - x1] = mask.decode_region(x1, y1, x2, y2)
    filled = _fill_small_holes(crop, min_region_area, _outside_parts(crop.shape, pads, (x1, y1, x2, y2), (h, w)))
    if filled is None:
        whole = _remove_small_islands(_fill_small_holes(mask.decode().astype(np.uint8), min_region_area, []),
                                      min_region_area)
        return RunLengthMask.from_mask(whole > 0)
    cleaned = _remove_small_islands(filled, min_region_area)
    return RunLengthMask.from_crop(cleaned[top:top + y2 - y1, left:left + x2 - x1] > 0, x1, y1, h, w)


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
