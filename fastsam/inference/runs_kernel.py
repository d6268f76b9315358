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


def _threshold_runs(across_t: np.ndarray, row_lo: np.ndarray, row_hi: np.ndarray, row_w: np.ndarray,
                    x0: int, y0: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs of ``value > 0`` where value(y, x) = across_t[x, row_lo[y]] * (1 - row_w[y]) + across_t[x, row_hi[y]]
    * row_w[y], for the output pixels (x0 + x, y0 + y) of an image ``height`` pixels tall; column-major flat
    indices, runs continuing from one column into the next joined."""
    width = across_t.shape[0]
    rows = row_lo.shape[0]
    # Room for the most runs a column can hold: only the pages written become resident, and growing arrays
    # inside the loop makes numba's code several times slower.
    capacity = width * (rows // 2 + 1)
    starts = np.empty(capacity, np.int64)
    ends = np.empty(capacity, np.int64)
    n = 0
    one = np.float32(1.0)
    for x in range(width):
        column = across_t[x]
        base = (x0 + x) * height + y0
        inside = False
        for y in range(rows):
            w = row_w[y]
            # Same operations and order as the tensor path: (lo * (1 - w)) + (hi * w), no fused multiply-add.
            positive = column[row_lo[y]] * (one - w) + column[row_hi[y]] * w > 0
            if positive != inside:
                flat = base + y
                if positive:
                    if n > 0 and ends[n - 1] == flat:
                        n -= 1  # the run from the previous column goes on
                    else:
                        starts[n] = flat
                else:
                    ends[n] = flat
                    n += 1
                inside = positive
        if inside:
            ends[n] = base + rows
            n += 1
    return starts[:n].copy(), ends[:n].copy()


threshold_runs = njit(cache=True, nogil=True)(_threshold_runs) if njit is not None else None
