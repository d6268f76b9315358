"""Matching predicted masks to reference masks."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def matched_mask_ious(candidate: Sequence[dict], reference: Sequence[dict]) -> np.ndarray:
    """For each reference mask (COCO RLE dicts), the IoU with its match among ``candidate``: pairs taken
    greedily from the highest IoU down, one-to-one; unmatched reference masks get 0, two empty masks 1."""
    from pycocotools import mask as coco_mask

    def coco(rle: dict) -> dict:
        counts = rle["counts"]
        return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}

    if not reference:
        return np.zeros(0)
    if not candidate:
        return np.zeros(len(reference))
    ours, theirs = [coco(r) for r in candidate], [coco(r) for r in reference]
    ious = np.array(coco_mask.iou(ours, theirs, [0] * len(theirs)), dtype=np.float64).reshape(len(ours), len(theirs))
    empty = np.array([coco_mask.area(r) == 0 for r in ours]), np.array([coco_mask.area(r) == 0 for r in theirs])
    ious[np.outer(*empty)] = 1.0
    matched = np.zeros(len(theirs))
    used_rows, used_cols = set(), set()
    for flat in np.argsort(-ious, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, ious.shape)
        if ious[i, j] <= 0:
            break
        if i not in used_rows and j not in used_cols:
            used_rows.add(i)
            used_cols.add(j)
            matched[j] = ious[i, j]
    return matched
