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


def _threshold_runs(across_t: np.ndarray, row_lo: np.ndarray, row_hi: np.ndarray, row_w: np.ndarray,
                    x0: int, y0: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs of ``value > 0`` where value(y, x) = across_t[x, row_lo[y]] * (1 - row_w[y]) + across_t[x, row_hi[y]]
    * row_w[y], for the output pixels (x0 + x, y0 + y) of an image ``height`` pixels tall; column-major flat
    indices, runs continuing from one column into the next joined."""
    width = across_t.shape[0]
    rows = row_lo.shape[0]
    # Output rows between the same two proto rows form a segment. When both proto values have one sign,
    # every pixel of the segment has it (a convex combination), so only segments that cross zero are
    # evaluated pixel by pixel.
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
        column = across_t[x]
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
