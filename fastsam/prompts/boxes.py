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


def best_box_instance(rles: Sequence[RunLengthMask], areas: np.ndarray, bounds: np.ndarray,
                      box: tuple[int, int, int, int]) -> int:
    """Index of the instance whose mask has the highest IoU with the filled integer box [x1, x2) x [y1, y2)
    (float32 IoU, the first instance on ties; instance 0 when no mask touches the box).

    bounds (N, 4) are the masks' tight boxes. Masks inside the box overlap it with all their pixels; masks
    crossing its edges are visited from the highest IoU they could reach (their pixels inside the box are at
    most their area and the part of their bounds inside the box) and the visit stops once that bound falls
    below the best IoU found: those masks could not win, so their runs are never read.
    """
    x1, y1, x2, y2 = box
    box_area = np.float32((x2 - x1) * (y2 - y1))
    areas32 = areas.astype(np.float32)
    inter = np.zeros(len(rles), np.float32)
    overlaps = (bounds[:, 0] < x2) & (bounds[:, 2] > x1) & (bounds[:, 1] < y2) & (bounds[:, 3] > y1)
    within = (bounds[:, 0] >= x1) & (bounds[:, 2] <= x2) & (bounds[:, 1] >= y1) & (bounds[:, 3] <= y2)
    inter[within] = areas[within]

    def iou(i: np.ndarray) -> np.ndarray:
        union = box_area + areas32[i] - inter[i]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter[i] / union, np.float32(0)).astype(np.float32)

    best = float(iou(np.flatnonzero(within)).max(initial=0.0))
    crossing = np.flatnonzero(overlaps & ~within)
    rect_w = np.minimum(bounds[crossing, 2], x2) - np.maximum(bounds[crossing, 0], x1)
    rect_h = np.minimum(bounds[crossing, 3], y2) - np.maximum(bounds[crossing, 1], y1)
    most_inside = np.minimum(areas[crossing], rect_w * rect_h).astype(np.float64)
    reachable = most_inside / np.maximum(float(box_area) + areas[crossing] - most_inside, 1.0)
    for order in np.argsort(-reachable, kind="stable"):
        # The margin keeps masks whose float32 IoU could round up to a tie with the best.
        if reachable[order] < best - 1e-6:
            break
        n = crossing[order]
        inter[n] = rles[n].box_overlap(x1, y1, x2, y2)
        best = max(best, float(iou(np.array([n]))[0]))
    return int(np.argmax(iou(np.arange(len(rles)))))


def box_prompt(rles: Sequence[RunLengthMask], areas: np.ndarray, bounds: np.ndarray, scores: np.ndarray,
               boxes: np.ndarray, image_size: tuple[int, int]) -> Selection:
    """One instance per box (in the order given): the highest mask-vs-box IoU, first instance on ties."""
    selection = Selection(image_size)
    for k, box in enumerate(boxes):
        best = best_box_instance(rles, areas, bounds, _round_box(box, image_size))
        selection.add(rles[best], best, f"box {k}", float(scores[best]))
    return selection
