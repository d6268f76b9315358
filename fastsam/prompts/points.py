"""Point prompts: foreground / background clicks select instances of a cached result."""

from __future__ import annotations

import numpy as np

from fastsam.prompts.selection import Selection
from fastsam.rle import RunLengthMask, RunTable


def _membership(table: RunTable, bounds: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(N, P) whether point p lies in instance n. bounds (N, 4) are the masks' tight integer boxes (exclusive
    max corner); only instances whose bounds hold the point are looked up, all in one compiled call."""
    in_box = (xs[None] >= bounds[:, :1]) & (xs[None] < bounds[:, 2:3]) & (ys[None] >= bounds[:, 1:2]) & (
        ys[None] < bounds[:, 3:4])
    masks, points = np.nonzero(in_box)
    inside = np.zeros(in_box.shape, bool)
    if masks.size:
        inside[masks, points] = table.holds(masks, xs[points], ys[points])
    return inside


def merge_point_prompt(table: RunTable, bounds: np.ndarray, areas: np.ndarray, scores: np.ndarray,
                       xs: np.ndarray, ys: np.ndarray, labels: np.ndarray, image_size: tuple[int, int]) -> Selection:
    """The original FastSAM point rule, as one merged mask.

    Instances are visited from the largest area to the smallest; for each point inside an instance, a
    foreground point adds the whole instance and a background point erases it (so the last point inside an
    instance decides). Instances that hold no point cannot change the result; the others are combined on their
    runs, never decoded. The score is the best score among the instances that were added.
    """
    inside = _membership(table, bounds, xs, ys)
    held = np.flatnonzero(inside.any(1))
    order = held[np.argsort(-areas[held], kind="stable")]  # largest first; ties keep their order
    if not order.size:
        merged, score = RunLengthMask.empty(*image_size), 0.0
    else:
        last_point = inside.shape[1] - 1 - np.argmax(inside[order, ::-1], axis=1)  # the last point inside each
        adds = labels[last_point] == 1
        merged = table.paint(order, adds)
        score = float(scores[order[adds]].max()) if adds.any() else 0.0
    selection = Selection(image_size)
    selection.add(merged, None, "points", score)
    return selection


def per_point_prompt(table: RunTable, bounds: np.ndarray, areas: np.ndarray, scores: np.ndarray,
                     xs: np.ndarray, ys: np.ndarray, labels: np.ndarray, image_size: tuple[int, int]) -> Selection:
    """One instance per foreground point: the smallest instance holding it and no background point (falling
    back to the smallest holding it); an empty mask when no instance holds the point."""
    inside = _membership(table, bounds, xs, ys)
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
        selection.add(table.mask(best), best, f"point {p}", float(scores[best]))
    return selection
