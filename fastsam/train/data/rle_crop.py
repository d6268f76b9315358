"""Decode only a box of a COCO compressed RLE: an SA-1B mask is a small part of a 3-megapixel image, and
decoding the whole frame for each of its ~100 masks is most of the cost of reading SA-1B.

The counts string is read, and the box filled from the runs, by compiled loops (numba; plain Python where
numba is missing).
"""

from __future__ import annotations

import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.rle import RunLengthMask

try:
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is not installed
    njit = None


def _string_counts(text: np.ndarray) -> np.ndarray:
    """COCO's compressed counts (LEB128-like: 5 bits per character from '0', a continuation bit, a sign bit
    on the last character; from the third count on, each is a difference to the count two before) -> counts."""
    counts = np.empty(text.size, np.int64)
    m = 0
    p = 0
    while p < text.size:
        value = 0
        shift = 0
        more = True
        while more:
            if p >= text.size:
                return counts[:0]  # truncated: the caller reports it
            c = np.int64(text[p]) - 48
            value |= (c & 0x1F) << shift
            more = (c & 0x20) != 0
            p += 1
            shift += 5
            if not more and (c & 0x10) != 0:
                value |= np.int64(-1) << shift
        if m > 2:
            value += counts[m - 2]
        counts[m] = value
        m += 1
    return counts[:m].copy()


def _fill_columns(starts: np.ndarray, ends: np.ndarray, height: int, x0: int, y0: int, x1: int,
                  y1: int) -> np.ndarray:
    """uint8 (x1 - x0, y1 - y0) column-major crop of the runs [starts, ends) (flat column-major indices)."""
    crop = np.zeros((x1 - x0, y1 - y0), np.uint8)
    for k in range(starts.size):
        flat, end = starts[k], ends[k]
        while flat < end:
            column, row = flat // height, flat % height
            stop = min(end, (column + 1) * height)  # a run may go on into the next column
            if x0 <= column < x1:
                for y in range(max(row, y0), min(row + stop - flat, y1)):
                    crop[column - x0, y - y0] = 1
            flat = stop
    return crop


if njit is not None:
    string_counts = njit(cache=True, nogil=True)(_string_counts)
    fill_columns = njit(cache=True, nogil=True)(_fill_columns)
else:  # pragma: no cover
    string_counts, fill_columns = _string_counts, _fill_columns


def decode_box(runs: RunLengthMask, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """uint8 (y1 - y0, x1 - x0) pixels of the box [x0, x1) x [y0, y1) of a mask; time grows with the box."""
    return np.ascontiguousarray(fill_columns(runs.starts, runs.ends, runs.height, x0, y0, x1, y1).T)


def rle_runs(rle: dict) -> RunLengthMask:
    """A COCO RLE (compressed string or list counts, column-major) as runs, without decoding any pixel."""
    try:
        height, width = (int(v) for v in rle["size"])
        raw = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"not a COCO RLE (needs 'size' [h, w] and 'counts'): {str(rle):.80}") from exc
    if isinstance(raw, str):
        raw = raw.encode("ascii")
    if isinstance(raw, bytes):
        counts = string_counts(np.frombuffer(raw, np.uint8))
    elif isinstance(raw, list):
        counts = np.asarray(raw, np.int64)
    else:
        raise InvalidInputError(f"RLE counts must be a string or a list, got {type(raw).__name__}")
    edges = np.cumsum(counts)
    if counts.size == 0 or (counts < 0).any() or edges[-1] != height * width:
        raise InvalidInputError(f"RLE counts do not add up to its size {height}x{width}")
    # Counts alternate zeros and ones, zeros first: runs of ones lie between edges[2k] and edges[2k + 1].
    starts, ends = edges[0:-1:2], edges[1::2]
    keep = ends > starts
    return RunLengthMask(starts[keep], ends[keep], height, width)
