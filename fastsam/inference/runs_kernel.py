"""Compiled inner loop of mask assembly: bilinear samples -> threshold -> runs, in one pass per pixel.

Numba compiles it on first use (cached on disk). Without numba, :func:`threshold_runs` is None and the caller
falls back to torch tensor operations, which give the same pixels but pass over each pixel several times.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is not installed
    njit = None


def _toggle(starts: np.ndarray, ends: np.ndarray, n: int, flat: int, entering: bool) -> int:
    """Open a run at ``flat`` (or continue the previous one when it ended right there) or close run n;
    returns the number of closed runs."""
    if entering:
        if n > 0 and ends[n - 1] == flat:
            return n - 1  # the run from the previous column goes on
        starts[n] = flat
        return n
    ends[n] = flat
    return n + 1


def _threshold_runs(grid_t: np.ndarray, col_lo: np.ndarray, col_hi: np.ndarray, col_w: np.ndarray,
                    row_lo: np.ndarray, row_hi: np.ndarray, row_w: np.ndarray,
                    x0: int, y0: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs of ``value > 0`` for the bilinear samples of a logit grid, at the output pixels (x0 + x, y0 + y) of
    an image ``height`` pixels tall; column-major flat indices, runs continuing from one column into the next
    joined.

    grid_t: (grid columns, grid rows) float32, the grid transposed; column x samples grid columns col_lo[x] and
    col_hi[x] with weight col_w[x] on the latter, row y grid rows row_lo[y], row_hi[y] with weight row_w[y].
    Columns are combined first, then rows, as F.interpolate's CPU kernel does: value(y, x) = across[row_lo[y]]
    * (1 - row_w[y]) + across[row_hi[y]] * row_w[y], across = grid_t[col_lo[x]] * (1 - col_w[x]) +
    grid_t[col_hi[x]] * col_w[x].
    """
    width = col_lo.shape[0]
    rows = row_lo.shape[0]
    grid_rows = grid_t.shape[1]
    column = np.empty(grid_rows, np.float32)
    # Output rows between the same two proto rows form a segment. When both proto values have one sign,
    # every pixel of the segment has it (a convex combination); otherwise the value is monotonic along the
    # segment and the one row where the sign flips is found by bisection. Only values within `tiny` of zero
    # are evaluated pixel by pixel.
    seg_begin = np.empty(rows + 1, np.int64)
    segments = 0
    for y in range(rows):
        if y == 0 or row_lo[y] != row_lo[y - 1] or row_hi[y] != row_hi[y - 1]:
            seg_begin[segments] = y
            segments += 1
    seg_begin[segments] = rows
    # Room for the most runs a column can hold: only the pages written become resident, and growing arrays
    # inside the loop makes numba's code several times slower.
    capacity = width * (rows // 2 + 1)
    starts = np.empty(capacity, np.int64)
    ends = np.empty(capacity, np.int64)
    n = 0
    one = np.float32(1.0)
    # Below this a product with a weight could underflow to zero, so the sign shortcut is not taken.
    tiny = np.float32(1e-30)
    for x in range(width):
        left, right = grid_t[col_lo[x]], grid_t[col_hi[x]]
        wx = col_w[x]
        wl = one - wx
        for r in range(grid_rows):
            column[r] = left[r] * wl + right[r] * wx
        base = (x0 + x) * height + y0
        inside = False
        for j in range(segments):
            first, stop = seg_begin[j], seg_begin[j + 1]
            lo = column[row_lo[first]]
            hi = column[row_hi[first]]
            if lo > tiny and hi > tiny:
                uniform, positive = True, True
            elif lo <= 0 and hi <= 0:
                uniform, positive = True, False
            else:
                uniform, positive = False, False
            if uniform:
                if positive != inside:
                    n = _toggle(starts, ends, n, base + first, positive)
                    inside = positive
                continue
            if lo < -tiny or lo > tiny:
                if hi < -tiny or hi > tiny:
                    # lo and hi have opposite signs, so consecutive rows' values differ by far more than the
                    # rounding error and the sign changes exactly once along the segment: binary search for it,
                    # with the same arithmetic as the per-pixel loop.
                    lo_positive = lo > 0
                    a, b = first, stop
                    while a < b:
                        mid = (a + b) // 2
                        w = row_w[mid]
                        if (lo * (one - w) + hi * w > 0) == lo_positive:
                            a = mid + 1
                        else:
                            b = mid
                    if a > first and lo_positive != inside:
                        n = _toggle(starts, ends, n, base + first, lo_positive)
                        inside = lo_positive
                    if a < stop and (not lo_positive) != inside:
                        n = _toggle(starts, ends, n, base + a, not lo_positive)
                        inside = not lo_positive
                    continue
            for y in range(first, stop):
                w = row_w[y]
                # Same operations and order as the tensor path: (lo * (1 - w)) + (hi * w), no fused multiply-add.
                positive = lo * (one - w) + hi * w > 0
                if positive != inside:
                    n = _toggle(starts, ends, n, base + y, positive)
                    inside = positive
        if inside:
            ends[n] = base + rows
            n += 1
    return starts[:n].copy(), ends[:n].copy()


if njit is not None:
    _toggle = njit(cache=True, nogil=True, inline="always")(_toggle)
    threshold_runs = njit(cache=True, nogil=True)(_threshold_runs)
else:  # pragma: no cover
    threshold_runs = None
