"""Box prompts: for each box, the instance whose mask best matches it (mask-vs-box IoU)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fastsam.prompts.selection import Selection
from fastsam.rle import RunLengthMask


def _round_box(box: np.ndarray, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    # As the original: Python round() (half to even) of each corner, then clipped to the image.
    h, w = image_size
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    return max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)


def box_ious(rles: Sequence[RunLengthMask], areas: np.ndarray, bounds: np.ndarray,
             box: tuple[int, int, int, int]) -> np.ndarray:
    """IoU between each instance mask and the filled integer box [x1, x2) x [y1, y2) -> (N,) float32.

    bounds (N, 4) are the masks' tight boxes; only masks whose bounds overlap the prompt box can intersect it,
    the others cost nothing.
    """
    x1, y1, x2, y2 = box
    box_area = (x2 - x1) * (y2 - y1)
    inter = np.zeros(len(rles), np.float32)
    overlaps = (bounds[:, 0] < x2) & (bounds[:, 2] > x1) & (bounds[:, 1] < y2) & (bounds[:, 3] > y1)
    # A mask inside the box overlaps it with all its pixels; only masks crossing its edges need their runs.
    within = (bounds[:, 0] >= x1) & (bounds[:, 2] <= x2) & (bounds[:, 1] >= y1) & (bounds[:, 3] <= y2)
    inter[within] = areas[within]
    for n in np.flatnonzero(overlaps & ~within):
        inter[n] = rles[n].box_overlap(x1, y1, x2, y2)
    union = np.float32(box_area) + areas.astype(np.float32) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.float32(0)).astype(np.float32)


def box_prompt(rles: Sequence[RunLengthMask], areas: np.ndarray, bounds: np.ndarray, scores: np.ndarray,
               boxes: np.ndarray, image_size: tuple[int, int]) -> Selection:
    """One instance per box (in the order given): the highest mask-vs-box IoU, first instance on ties."""
    selection = Selection(image_size)
    for k, box in enumerate(boxes):
        ious = box_ious(rles, areas, bounds, _round_box(box, image_size))
        best = int(np.argmax(ious))
        selection.add(rles[best], best, f"box {k}", float(scores[best]))
    return selection
