"""The BSDS500 boundary benchmark protocol (Arbelaez et al., PAMI 2011), written from its description.

For each of ``n`` thresholds ``linspace(1/(n+1), 1 - 1/(n+1), n)`` the edge map is binarised (``>= t``) and thinned
to one-pixel lines (MATLAB's ``bwmorph(.., 'thin', inf)``: Lam, Lee & Suen's two-subiteration algorithm); its
pixels are put in one-to-one correspondence with each annotator's boundary pixels within a distance of
``max_dist`` x the image diagonal (0.0075 by default). Per threshold the benchmark accumulates

* ``cnt_r``: ground-truth pixels matched, summed over annotators; ``sum_r``: ground-truth pixels, summed;
* ``cnt_p``: predicted pixels matched by at least one annotator; ``sum_p``: predicted pixels,

and summarises a set of images as ODS (best F of the dataset-wide counts at one threshold, interpolated between
thresholds), OIS (counts of each image at its own best threshold), AP (area under the interpolated precision /
recall curve) and R50 (recall at 50% precision, as in Dollar's edge toolbox).

Correspondence: the original (``correspondPixels``) solves a min-cost assignment (Goldberg's CSA) in which a
pixel left unmatched costs 100 x max_dist, so it maximises the number of matched pairs and, among maximum
matchings, the total distance. Here the pairs within the tolerance form a sparse bipartite graph; a greedy pass
matches the closest free pairs first (all zero-distance pairs, then the next ring of offsets...) and
Hopcroft-Karp augmenting paths then complete it to a maximum matching. The match count (hence recall) is the
same; which predicted pixels end up matched (hence the union over annotators behind ``cnt_p``) can differ from
the min-cost choice where several maximum matchings exist, a small effect on precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numba import njit

from fastsam.errors import InvalidInputError
from fastsam.extras import import_optional

DEFAULT_MAX_DIST = 0.0075
DEFAULT_THRESHOLDS = 99


def threshold_grid(count: int) -> np.ndarray:
    """The benchmark's ``count`` thresholds, evenly inside (0, 1): ``linspace(1/(n+1), 1 - 1/(n+1), n)``."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise InvalidInputError(f"thresholds must be a positive integer, got {count!r}")
    return np.linspace(1.0 / (count + 1), 1.0 - 1.0 / (count + 1), int(count))


def load_ground_truth(path: str | Path) -> list[np.ndarray]:
    """Every annotator's boundary map from a BSDS ``.mat`` file: a list of (H, W) bool arrays."""
    scipy_io = import_optional("scipy.io", "eval", "reading BSDS500 ground truth (fastsam bench edges)")
    loadmat, MatReadError = scipy_io.loadmat, scipy_io.matlab.MatReadError

    try:
        cells = loadmat(str(path))["groundTruth"]
        boundaries = [np.asarray(cells[0, k]["Boundaries"][0, 0], dtype=bool) for k in range(cells.shape[1])]
    except (OSError, ValueError, KeyError, IndexError, TypeError, MatReadError) as exc:
        raise InvalidInputError(f"{path}: not a BSDS ground-truth file with groundTruth{{k}}.Boundaries "
                                f"({exc})") from exc
    if not boundaries or any(b.ndim != 2 or b.shape != boundaries[0].shape for b in boundaries):
        raise InvalidInputError(f"{path}: annotators' boundary maps are missing or of different sizes")
    return boundaries


# ------------------------------------------------------------------------------------------------- thinning
@njit(cache=True, nogil=True)
def _thin_in_place(image: np.ndarray) -> None:
    """Lam-Lee-Suen parallel thinning (the algorithm of MATLAB's ``bwmorph thin``) until nothing changes.

    Neighbours x1..x8 run counter-clockwise from east. A pixel is deleted when its Hilditch crossing number is 1,
    2 <= min(n1, n2) <= 3, and (x2 | x3 | !x8) & x1 == 0 in the first subiteration, (x6 | x7 | !x4) & x5 == 0 in
    the second. Outside the image counts as background."""
    height, width = image.shape
    ys, xs = np.nonzero(image)
    count = ys.size
    delete = np.zeros(count, np.bool_)
    nb = np.zeros(10, np.int64)
    dy = np.array([0, -1, -1, -1, 0, 1, 1, 1])
    dx = np.array([1, 1, 0, -1, -1, -1, 0, 1])
    changed = True
    while changed:
        changed = False
        for sub in range(2):
            for k in range(count):
                delete[k] = False
                y, x = ys[k], xs[k]
                if not image[y, x]:
                    continue
                for i in range(8):
                    yy, xx = y + dy[i], x + dx[i]
                    nb[i + 1] = 1 if 0 <= yy < height and 0 <= xx < width and image[yy, xx] else 0
                nb[9] = nb[1]
                crossing = 0
                for i in range(1, 5):
                    if nb[2 * i - 1] == 0 and (nb[2 * i] == 1 or nb[2 * i + 1] == 1):
                        crossing += 1
                if crossing != 1:
                    continue
                n1 = 0
                n2 = 0
                for i in range(1, 5):
                    n1 += nb[2 * i - 1] | nb[2 * i]
                    n2 += nb[2 * i] | nb[2 * i + 1]
                smaller = min(n1, n2)
                if smaller < 2 or smaller > 3:
                    continue
                if sub == 0:
                    side = (nb[2] | nb[3] | (1 - nb[8])) & nb[1]
                else:
                    side = (nb[6] | nb[7] | (1 - nb[4])) & nb[5]
                delete[k] = side == 0
            # Parallel: every decision of a subiteration is taken on the image as it was before it.
            for k in range(count):
                if delete[k]:
                    image[ys[k], xs[k]] = False
                    changed = True
        kept = 0
        for k in range(count):
            if image[ys[k], xs[k]]:
                ys[kept], xs[kept] = ys[k], xs[k]
                kept += 1
        count = kept


def thin(binary: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool: regions thinned to one-pixel, 8-connected lines (``bwmorph thin inf``)."""
    image = np.array(binary, dtype=np.bool_, copy=True, order="C")
    if image.ndim != 2:
        raise InvalidInputError(f"thin expects a 2-D map, got shape {image.shape}")
    _thin_in_place(image)
    return image


# -------------------------------------------------------------------------------------------- correspondence
def disc_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets (dy, dx) with dy^2 + dx^2 <= radius^2, nearest first (int64 arrays)."""
    reach = int(np.floor(radius))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    dy, dx = dy.ravel(), dx.ravel()
    squared = dy * dy + dx * dx
    keep = squared <= radius * radius + 1e-9
    order = np.argsort(squared[keep], kind="stable")
    return dy[keep][order].astype(np.int64), dx[keep][order].astype(np.int64)


class _Truth:
    """One annotator's boundary pixels, indexed for matching: ids on the grid, coordinates, and where a
    predicted pixel can have a partner at all (the boundary dilated by the tolerance disc)."""

    def __init__(self, truth: np.ndarray, off_y: np.ndarray, off_x: np.ndarray) -> None:
        self.y, self.x = (v.astype(np.int64) for v in np.nonzero(truth))
        self.ids = np.full(truth.shape, -1, np.int32)
        self.ids[self.y, self.x] = np.arange(self.y.size, dtype=np.int32)
        reach = int(max(np.abs(off_y).max(), np.abs(off_x).max())) if off_y.size else 0
        disc = np.zeros((2 * reach + 1, 2 * reach + 1), np.uint8)
        disc[off_y + reach, off_x + reach] = 1
        self.near = cv2.dilate(truth.astype(np.uint8), disc, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


@njit(cache=True, nogil=True)
def _max_matching(pred_y: np.ndarray, pred_x: np.ndarray, near: np.ndarray, truth_ids: np.ndarray,
                  n_truth: int, off_y: np.ndarray, off_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum one-to-one matching of predicted pixels (pred_y, pred_x) to ground-truth pixels (ids on the grid
    ``truth_ids``, -1 elsewhere; ``near`` marks where any is within reach) at the offsets (nearest first).
    Returns bool flags: matched predicted pixels (n_pred,), matched ground-truth ids (n_truth,)."""
    height, width = truth_ids.shape
    n_left, n_off = pred_y.size, off_y.size
    left_match = np.full(n_left, -1, np.int64)
    right_match = np.full(n_truth, -1, np.int64)
    # Adjacency (CSR), each pixel's candidates nearest first; pixels far from every boundary have none.
    start = np.zeros(n_left + 1, np.int64)
    for i in range(n_left):
        degree = 0
        if near[pred_y[i], pred_x[i]]:
            for k in range(n_off):
                yy, xx = pred_y[i] + off_y[k], pred_x[i] + off_x[k]
                if 0 <= yy < height and 0 <= xx < width and truth_ids[yy, xx] >= 0:
                    degree += 1
        start[i + 1] = start[i] + degree
    adjacent = np.empty(start[n_left], np.int64)
    ring = np.empty(start[n_left], np.int64)  # offset index of each candidate: its distance rank
    for i in range(n_left):
        if start[i + 1] == start[i]:
            continue
        pos = start[i]
        for k in range(n_off):
            yy, xx = pred_y[i] + off_y[k], pred_x[i] + off_x[k]
            if 0 <= yy < height and 0 <= xx < width and truth_ids[yy, xx] >= 0:
                adjacent[pos] = truth_ids[yy, xx]
                ring[pos] = k
                pos += 1
    # Only pixels with candidates take part in what follows (most are far from every boundary).
    n_active = 0
    for i in range(n_left):
        if start[i + 1] > start[i]:
            n_active += 1
    active = np.empty(n_active, np.int64)
    n_active = 0
    for i in range(n_left):
        if start[i + 1] > start[i]:
            active[n_active] = i
            n_active += 1
    # Greedy, globally nearest first: offset by offset, every still free pair at that offset.
    cursor = start[:-1].copy()
    for k in range(n_off):
        for i in active:
            if left_match[i] >= 0 or cursor[i] >= start[i + 1] or ring[cursor[i]] != k:
                continue
            j = adjacent[cursor[i]]
            cursor[i] += 1
            if right_match[j] < 0:
                left_match[i] = j
                right_match[j] = i
    # Hopcroft-Karp phases: shortest augmenting paths by BFS layers, vertex-disjoint paths by DFS.
    infinity = n_left + 1
    layer = np.empty(n_left, np.int64)
    queue = np.empty(n_left, np.int64)
    next_edge = np.empty(n_left, np.int64)
    stack = np.empty(n_left, np.int64)
    while True:
        head, tail = 0, 0
        for i in active:
            if left_match[i] < 0:
                layer[i] = 0
                queue[tail] = i
                tail += 1
            else:
                layer[i] = infinity
        found = False
        while head < tail:
            u = queue[head]
            head += 1
            for e in range(start[u], start[u + 1]):
                w = right_match[adjacent[e]]
                if w < 0:
                    found = True
                elif layer[w] == infinity:
                    layer[w] = layer[u] + 1
                    queue[tail] = w
                    tail += 1
        if not found:
            break
        for i in active:
            next_edge[i] = start[i]
        for source in active:
            if left_match[source] >= 0 or layer[source] != 0:
                continue
            depth = 1
            stack[0] = source
            while depth > 0:
                u = stack[depth - 1]
                if next_edge[u] >= start[u + 1]:
                    layer[u] = infinity  # a dead end for the rest of this phase
                    depth -= 1  # the parent then finds this node's layer changed and moves on
                    continue
                v = adjacent[next_edge[u]]
                w = right_match[v]
                if w < 0:
                    for s in range(depth):
                        a = stack[s]
                        b = adjacent[next_edge[a]]
                        left_match[a] = b
                        right_match[b] = a
                    break
                if layer[w] == layer[u] + 1 and depth < n_left:
                    stack[depth] = w
                    depth += 1
                else:
                    next_edge[u] += 1
    return left_match >= 0, right_match >= 0


def _tolerance_offsets(shape: tuple[int, int], max_dist: float) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(max_dist, bool) or not isinstance(max_dist, (int, float)) or not 0.0 <= float(max_dist) < 1.0:
        raise InvalidInputError(f"max_dist must be a fraction of the diagonal in [0, 1), got {max_dist!r}")
    return disc_offsets(float(max_dist) * float(np.hypot(*shape)))


def correspond_pixels(pred: np.ndarray, truth: np.ndarray, max_dist: float = DEFAULT_MAX_DIST
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Match boundary pixels one to one within ``max_dist`` x the image diagonal (pixels, Euclidean).

    pred, truth: (H, W) boolean boundary maps. Returns (H, W) bool maps of the matched pixels of each; a maximum
    matching (see the module notes for how it relates to the original's min-cost assignment)."""
    pred, truth = _check_pair(pred, truth)
    off_y, off_x = _tolerance_offsets(pred.shape, max_dist)
    indexed = _Truth(truth, off_y, off_x)
    pred_y, pred_x = (v.astype(np.int64) for v in np.nonzero(pred))
    matched_pred, matched_truth = _max_matching(pred_y, pred_x, indexed.near, indexed.ids, indexed.y.size,
                                                off_y, off_x)
    pred_map = np.zeros(pred.shape, bool)
    pred_map[pred_y[matched_pred], pred_x[matched_pred]] = True
    truth_map = np.zeros(truth.shape, bool)
    truth_map[indexed.y[matched_truth], indexed.x[matched_truth]] = True
    return pred_map, truth_map


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.ndim != 2 or pred.shape != truth.shape:
        raise InvalidInputError(f"boundary maps must be 2-D and of one size, got {pred.shape} and {truth.shape}")
    return np.ascontiguousarray(pred, dtype=np.bool_), np.ascontiguousarray(truth, dtype=np.bool_)


# ----------------------------------------------------------------------------------------- one image's counts
@dataclass
class BoundaryCounts:
    """Per-threshold match counts of one image (or a sum of images): each a (T,) int64 array."""

    thresholds: np.ndarray
    cnt_r: np.ndarray
    sum_r: np.ndarray
    cnt_p: np.ndarray
    sum_p: np.ndarray

    def to_json(self) -> dict:
        return {"thresholds": self.thresholds.tolist(), "cnt_r": self.cnt_r.tolist(), "sum_r": self.sum_r.tolist(),
                "cnt_p": self.cnt_p.tolist(), "sum_p": self.sum_p.tolist()}

    @classmethod
    def from_json(cls, document: dict) -> "BoundaryCounts":
        return cls(np.asarray(document["thresholds"], np.float64),
                   *(np.asarray(document[key], np.int64) for key in ("cnt_r", "sum_r", "cnt_p", "sum_p")))


def evaluate_boundaries(edge_map: np.ndarray, truths: list[np.ndarray], thresholds: int = DEFAULT_THRESHOLDS,
                        max_dist: float = DEFAULT_MAX_DIST, thin_maps: bool = True) -> BoundaryCounts:
    """Count matches of a soft edge map against every annotator at each threshold (the benchmark's per-image step).

    edge_map: (H, W) floats in [0, 1] (higher = more likely a boundary); truths: annotators' (H, W) bool maps.
    """
    grid = threshold_grid(thresholds)
    edges = np.asarray(edge_map, dtype=np.float64)
    if edges.ndim != 2:
        raise InvalidInputError(f"edge map must be 2-D, got shape {edges.shape}")
    if not np.all(np.isfinite(edges)) or (edges.size and (edges.min() < 0 or edges.max() > 1)):
        raise InvalidInputError("edge map values must be finite and within [0, 1]")
    if not truths:
        raise InvalidInputError("no ground-truth boundary maps to evaluate against")
    truths = [_check_pair(edges, truth)[1] for truth in truths]
    off_y, off_x = _tolerance_offsets(edges.shape, max_dist)
    indexed = [_Truth(truth, off_y, off_x) for truth in truths]
    size = grid.size
    cnt_r, sum_r = np.zeros(size, np.int64), np.zeros(size, np.int64)
    cnt_p, sum_p = np.zeros(size, np.int64), np.zeros(size, np.int64)
    truth_total = int(sum(int(t.sum()) for t in truths))
    previous: np.ndarray | None = None
    for k, level in enumerate(grid):
        binary = edges >= level
        if thin_maps:
            binary = thin(binary)
        sum_r[k] = truth_total
        # Maps of consecutive thresholds are often the same: their counts are too.
        if previous is not None and np.array_equal(binary, previous):
            cnt_r[k], cnt_p[k], sum_p[k] = cnt_r[k - 1], cnt_p[k - 1], sum_p[k - 1]
            continue
        pred_y, pred_x = (v.astype(np.int64) for v in np.nonzero(binary))
        matched_any = np.zeros(pred_y.size, np.bool_)
        for truth in indexed:
            matched_pred, matched_truth = _max_matching(pred_y, pred_x, truth.near, truth.ids, truth.y.size,
                                                        off_y, off_x)
            matched_any |= matched_pred
            cnt_r[k] += int(matched_truth.sum())
        cnt_p[k] = int(matched_any.sum())
        sum_p[k] = int(pred_y.size)
        previous = binary
    return BoundaryCounts(grid, cnt_r, sum_r, cnt_p, sum_p)


# ------------------------------------------------------------------------------------------------ summaries
def _ratio(count: np.ndarray, total: np.ndarray) -> np.ndarray:
    return np.asarray(count, np.float64) / np.where(np.asarray(total) == 0, 1, total)


def f_measure(recall: np.ndarray | float, precision: np.ndarray | float) -> np.ndarray:
    """Harmonic mean of precision and recall, 0 where both are 0."""
    r, p = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    total = p + r
    return 2 * p * r / np.where(total == 0, 1, total)


def best_f(thresholds: np.ndarray, recall: np.ndarray, precision: np.ndarray) -> tuple[float, float, float, float]:
    """The benchmark's maxF: the best F on the PR curve, linearly interpolated (100 steps) between consecutive
    thresholds. Returns (threshold, recall, precision, F)."""
    if thresholds.size == 1:
        return float(thresholds[0]), float(recall[0]), float(precision[0]), float(f_measure(recall[0], precision[0]))
    steps = np.linspace(0.0, 1.0, 100)[None, :]
    r = recall[1:, None] * steps + recall[:-1, None] * (1 - steps)
    p = precision[1:, None] * steps + precision[:-1, None] * (1 - steps)
    t = thresholds[1:, None] * steps + thresholds[:-1, None] * (1 - steps)
    f = f_measure(r, p)
    best = int(np.argmax(f))  # first maximum, as the original's strict '>' keeps the first
    return float(t.flat[best]), float(r.flat[best]), float(p.flat[best]), float(f.flat[best])


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """BSDS500's AP: precision interpolated linearly over the distinct recalls at recall 0, 0.01, ..., 1;
    outside the recalls reached it counts 0; the sum x 0.01. (Of tied recalls the highest threshold's point is
    kept, as MATLAB's ``unique`` did when the benchmark was written.)"""
    order = np.argsort(recall, kind="stable")
    r, p = recall[order], precision[order]
    last = np.r_[r[1:] != r[:-1], True]
    r, p = r[last], p[last]
    if r.size < 2:
        return 0.0
    grid = np.linspace(0.0, 1.0, 101)
    values = np.interp(grid, r, p)
    values[(grid < r[0]) | (grid > r[-1])] = 0.0
    # 101 samples x 0.01 can reach 1.01 for a curve spanning every recall at precision 1: capped at 1.
    return float(min(values.sum() * 0.01, 1.0))


def recall_at_half_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """R50 as Dollar's edge toolbox: recall interpolated at precision max(0.5, lowest precision) over the
    distinct precisions; 0 when no threshold reaches 50% precision."""
    p, first = np.unique(precision, return_index=True)
    r = recall[first]
    target = max(float(p[0]), 0.5)
    if target > p[-1]:
        return 0.0
    if p.size == 1:
        return float(r[0])
    return float(np.interp(target, p, r))


def summarize(per_image: list[BoundaryCounts]) -> dict:
    """ODS, OIS, AP and R50 of a set of images' counts (same thresholds), plus the dataset PR curve.

    Returns {"ODS": {threshold, recall, precision, F}, "OIS": {recall, precision, F}, "AP", "R50",
    "curve": {thresholds, recall, precision, F}}."""
    if not per_image:
        raise InvalidInputError("no images to summarise")
    thresholds = per_image[0].thresholds
    if any(c.thresholds.shape != thresholds.shape or not np.allclose(c.thresholds, thresholds) for c in per_image):
        raise InvalidInputError("images were evaluated at different thresholds")
    totals = {key: np.sum([getattr(c, key) for c in per_image], axis=0) for key in ("cnt_r", "sum_r", "cnt_p", "sum_p")}
    recall = _ratio(totals["cnt_r"], totals["sum_r"])
    precision = _ratio(totals["cnt_p"], totals["sum_p"])
    ods_t, ods_r, ods_p, ods_f = best_f(thresholds, recall, precision)
    # OIS: each image at the threshold of its own best (uninterpolated) F, counts summed over images.
    best = np.zeros(4, np.int64)
    for c in per_image:
        k = int(np.argmax(f_measure(_ratio(c.cnt_r, c.sum_r), _ratio(c.cnt_p, c.sum_p))))
        best += (c.cnt_r[k], c.sum_r[k], c.cnt_p[k], c.sum_p[k])
    ois_r, ois_p = float(_ratio(best[0], best[1])), float(_ratio(best[2], best[3]))
    return {
        "ODS": {"threshold": ods_t, "recall": ods_r, "precision": ods_p, "F": ods_f},
        "OIS": {"recall": ois_r, "precision": ois_p, "F": float(f_measure(ois_r, ois_p))},
        "AP": average_precision(recall, precision),
        "R50": recall_at_half_precision(recall, precision),
        "curve": {"thresholds": thresholds.tolist(), "recall": recall.tolist(), "precision": precision.tolist(),
                  "F": f_measure(recall, precision).tolist()},
    }


def image_best(counts: BoundaryCounts) -> dict:
    """One image's best interpolated F: {threshold, recall, precision, F}."""
    t, r, p, f = best_f(counts.thresholds, _ratio(counts.cnt_r, counts.sum_r), _ratio(counts.cnt_p, counts.sum_p))
    return {"threshold": t, "recall": r, "precision": p, "F": f}
