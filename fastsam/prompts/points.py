"""Point prompts: foreground / background clicks select instances of a cached result."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fastsam.prompts.selection import Selection
from fastsam.rle import RunLengthMask, paint


def _membership(rles: Sequence[RunLengthMask], bounds: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(N, P) whether point p lies in instance n. bounds (N, 4) are the masks' tight integer boxes (exclusive
    max corner); only instances whose bounds hold the point are looked up."""
    inside = np.zeros((len(rles), xs.size), bool)
    in_box = (xs[None] >= bounds[:, :1]) & (xs[None] < bounds[:, 2:3]) & (ys[None] >= bounds[:, 1:2]) & (
        ys[None] < bounds[:, 3:4])
    for n in np.flatnonzero(in_box.any(1)):
        cols = np.flatnonzero(in_box[n])
        inside[n, cols] = rles[n].contains(xs[cols], ys[cols])
    return inside


def merge_point_prompt(rles: Sequence[RunLengthMask], bounds: np.ndarray, areas: np.ndarray, scores: np.ndarray,
                       xs: np.ndarray, ys: np.ndarray, labels: np.ndarray, image_size: tuple[int, int]) -> Selection:
    """The original FastSAM point rule, as one merged mask.

    Instances are visited from the largest area to the smallest; for each point inside an instance, a
    foreground point adds the whole instance and a background point erases it (so the last point inside an
    instance decides). Instances that hold no point cannot change the result; the others are combined on their
    runs, never decoded. The score is the best score among the instances that were added.
    """
    inside = _membership(rles, bounds, xs, ys)
    order = sorted(np.flatnonzero(inside.any(1)), key=lambda i: -int(areas[i]))  # stable: ties keep order
    if not order:
        merged, score = RunLengthMask.empty(*image_size), 0.0
    else:
        adds = [bool(labels[np.flatnonzero(inside[n])[-1]] == 1) for n in order]
        merged = paint([rles[n] for n in order], adds)
        added = [float(scores[n]) for n, add in zip(order, adds) if add]
        score = max(added, default=0.0)
    selection = Selection(image_size)
    selection.add(merged, None, "points", score)
    return selection


def per_point_prompt(rles: Sequence[RunLengthMask], bounds: np.ndarray, areas: np.ndarray, scores: np.ndarray,
                     xs: np.ndarray, ys: np.ndarray, labels: np.ndarray, image_size: tuple[int, int]) -> Selection:
    """One instance per foreground point: the smallest instance holding it and no background point (falling
    back to the smallest holding it); an empty mask when no instance holds the point."""
    inside = _membership(rles, bounds, xs, ys)
    background = inside[:, labels == 0].any(1)
    selection = Selection(image_size)
    for p in np.flatnonzero(labels == 1):
        holders = np.flatnonzero(inside[:, p])
        clean = holders[~background[holders]]
        pool = clean if clean.size else holders
        if pool.size == 0:
            selection.add(RunLengthMask.empty(*image_size), None, f"point {p}", 0.0)
            continue
        best = int(pool[np.lexsort((pool, areas[pool]))[0]])  # smallest area, then lowest index
        selection.add(rles[best], best, f"point {p}", float(scores[best]))
    return selection
