"""Compiled inner loops of mask assembly: logits on the proto grid, bilinear samples -> threshold -> runs.

Numba compiles them on first use (cached on disk). Without numba, :func:`threshold_runs` and
:func:`retina_runs` are None and the caller falls back to tensor operations, which give the same pixels but pass
over each pixel several times. Float32 arithmetic here is written to round exactly as the NumPy fallback does
(no fused multiply-adds: numba does not contract without fastmath).
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is not installed
    njit = None


def _sign_changes(grid_t: np.ndarray, col_lo: np.ndarray, col_hi: np.ndarray, col_w: np.ndarray,
                  row_lo: np.ndarray, row_hi: np.ndarray, row_w: np.ndarray,
                  x0: int, y0: int, height: int, bounds: np.ndarray) -> int:
    """Runs of ``value > 0`` for the bilinear samples of a logit grid, at the output pixels (x0 + x, y0 + y) of
    an image ``height`` pixels tall; column-major flat indices, runs continuing from one column into the next
    joined. Written to ``bounds`` (room for columns x (rows + 1) + 2 values) as start, end, start, end, ...;
    returns how many values were written.

    grid_t: (grid columns, grid rows) float32, the grid transposed; column x samples grid columns col_lo[x] and
    col_hi[x] with weight col_w[x] on the latter, row y grid rows row_lo[y], row_hi[y] with weight row_w[y].
    Columns are combined first, then rows, as F.interpolate's CPU kernel does: value(y, x) = across[row_lo[y]]
    * (1 - row_w[y]) + across[row_hi[y]] * row_w[y], across = grid_t[col_lo[x]] * (1 - col_w[x]) +
    grid_t[col_hi[x]] * col_w[x].
    """
    width = col_lo.shape[0]
    rows = row_lo.shape[0]
    # Output rows between the same two proto rows form a segment. When both (column-interpolated) proto values
    # have one sign, every pixel of the segment has it (a convex combination); when they have opposite signs
    # (and are far from zero, so consecutive rows' values differ by far more than the rounding error) the value
    # is monotonic along the segment and changes sign once, at a row first guessed from where the linear
    # interpolation crosses zero, then confirmed with the same arithmetic as the per-pixel loop. Only values
    # within `tiny` of zero, where a product with a weight could underflow, are evaluated pixel by pixel. Sign
    # changes are written without branches (write, then advance the count only when needed): with noisy masks
    # those branches would be unpredictable. Cells known to be all on or all off from their four grid values
    # are not interpolated at all: with real masks most of a box is such cells, and a column costs what its
    # mixed cells cost.
    seg_begin = np.empty(rows + 1, np.int64)
    segments = 0
    for y in range(rows):
        if y == 0 or row_lo[y] != row_lo[y - 1] or row_hi[y] != row_hi[y - 1]:
            seg_begin[segments] = y
            segments += 1
    seg_begin[segments] = rows
    seg_lo = np.empty(segments, np.int64)
    seg_hi = np.empty(segments, np.int64)
    seg_w0 = np.empty(segments, np.float32)
    seg_inv_step = np.empty(segments, np.float32)
    for j in range(segments):
        first, stop = seg_begin[j], seg_begin[j + 1]
        seg_lo[j] = row_lo[first]
        seg_hi[j] = row_hi[first]
        seg_w0[j] = row_w[first]
        span = row_w[stop - 1] - row_w[first]
        seg_inv_step[j] = (stop - 1 - first) / span if span > 0 else np.float32(0.0)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    tiny = np.float32(1e-30)
    huge = np.float32(1e37)  # below it, sums of two weighted values cannot overflow
    # A proto cell (two grid columns x one segment) whose four values are all in (tiny, huge) is on at every
    # output pixel it covers, one whose values are all <= 0 is off; only the other ("mixed") cells, NaN and
    # values near zero included, need the pixel arithmetic. Per grid column and segment: +1 / -1 / 0 (mixed).
    grid_columns = grid_t.shape[0]
    follows = np.zeros(segments, np.bool_)  # segment j starts on the grid row where segment j - 1 ends
    for j in range(1, segments):
        follows[j] = seg_lo[j] == seg_hi[j - 1]
    kind = np.empty((grid_columns, segments), np.int8)
    for c in range(grid_columns):
        for j in range(segments):
            a, b = grid_t[c, seg_lo[j]], grid_t[c, seg_hi[j]]
            if a > tiny and b > tiny and a < huge and b < huge:
                kind[c, j] = 1
            elif a <= zero and b <= zero:
                kind[c, j] = -1
            else:
                kind[c, j] = 0
    # The column walk for the current pair of grid columns: blocks of cells of one sign (+1 / -1, by their
    # first segment) and mixed cells (0), in order. Output columns between the same grid columns share it.
    walk_segment = np.empty(segments, np.int64)
    walk_kind = np.empty(segments, np.int8)
    steps = 0
    pair_lo, pair_hi = -1, -1
    n = 0  # values written to bounds
    for x in range(width):
        c_lo, c_hi = col_lo[x], col_hi[x]
        if c_lo != pair_lo or c_hi != pair_hi:
            pair_lo, pair_hi = c_lo, c_hi
            steps = 0
            previous = 2
            for j in range(segments):
                a, b = kind[c_lo, j], kind[c_hi, j]
                k = a if a == b else 0
                if k == 0 or k != previous:
                    walk_segment[steps] = j
                    walk_kind[steps] = k
                    steps += 1
                previous = k
        if steps == 1 and walk_kind[0] == -1:
            continue  # every pixel of the column is off (a common case: columns outside the object)
        left, right = grid_t[c_lo], grid_t[c_hi]
        wx = col_w[x]
        wl = one - wx
        base = (x0 + x) * height + y0
        inside = False
        if n > 0 and bounds[n - 1] == base:  # the previous column's last run reaches this column: go on with it
            n -= 1
            inside = True
        carried, carried_segment = zero, np.int64(-2)
        for step in range(steps):
            j = walk_segment[step]
            first = seg_begin[j]
            if walk_kind[step] != 0:  # cells of one sign up to the next step
                positive = walk_kind[step] > 0
                bounds[n] = base + first
                n += positive != inside
                inside = positive
                continue
            stop = seg_begin[j + 1]
            length = stop - first
            # Consecutive mixed cells share a grid row, whose value the previous one computed.
            reuse = j == carried_segment + 1 and follows[j]
            lo = carried if reuse else left[seg_lo[j]] * wl + right[seg_lo[j]] * wx
            hi = left[seg_hi[j]] * wl + right[seg_hi[j]] * wx
            carried, carried_segment = hi, j
            lo_positive = lo > zero
            hi_positive = hi > zero
            if not ((abs(lo) > tiny and abs(hi) > tiny) or (not lo_positive and not hi_positive)):  # near 0, NaN
                for y in range(first, stop):
                    w = row_w[y]
                    positive = lo * (one - w) + hi * w > zero
                    bounds[n] = base + y
                    n += positive != inside
                    inside = positive
                continue
            if lo_positive == hi_positive:  # the whole segment has one sign
                bounds[n] = base + first
                n += lo_positive != inside
                inside = lo_positive
                continue
            # Opposite signs: guess the first row past the zero of the linear interpolation, then step until
            # the per-pixel arithmetic agrees that it is the first row whose sign differs from lo's.
            guess = (lo / (lo - hi) - seg_w0[j]) * seg_inv_step[j] + one
            k = 0
            if guess >= length:
                k = length
            elif guess > zero:
                k = np.int64(guess)
            while k < length:
                w = row_w[first + k]
                if (lo * (one - w) + hi * w > zero) != lo_positive:
                    break
                k += 1
            while k > 0:
                w = row_w[first + k - 1]
                if (lo * (one - w) + hi * w > zero) == lo_positive:
                    break
                k -= 1
            head = lo_positive if k > 0 else hi_positive
            bounds[n] = base + first
            n += head != inside
            bounds[n] = base + first + k
            n += (k > 0) & (k < length)
            inside = hi_positive if k < length else lo_positive
        if inside:
            bounds[n] = base + rows
            n += 1
    return n


def _threshold_runs(grid_t: np.ndarray, col_lo: np.ndarray, col_hi: np.ndarray, col_w: np.ndarray,
                    row_lo: np.ndarray, row_hi: np.ndarray, row_w: np.ndarray,
                    x0: int, y0: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The runs of :func:`_sign_changes` as (starts, ends) arrays."""
    bounds = np.empty(col_lo.shape[0] * (row_lo.shape[0] + 1) + 2, np.int64)
    n = _sign_changes(grid_t, col_lo, col_hi, col_w, row_lo, row_hi, row_w, x0, y0, height, bounds)
    return bounds[0:n:2].copy(), bounds[1:n:2].copy()



def _column_logits(protos_t: np.ndarray, coefficients: np.ndarray, column: int, row0: int, row1: int,
                   target: np.ndarray) -> None:
    """Adds one instance's logits at grid ``column``, rows [row0, row1), into ``target`` (zeros on entry),
    summed over the prototypes in order (the NumPy fallback's order)."""
    for k in range(protos_t.shape[0]):
        weight = coefficients[k]
        source = protos_t[k, column, row0:row1]
        for r in range(row1 - row0):
            target[r] = target[r] + weight * source[r]


def _proto_logits_t(protos_t: np.ndarray, coefficients: np.ndarray, col0: int, col1: int, row0: int, row1: int
                    ) -> np.ndarray:
    """One instance's logits on the proto grid, transposed, for grid columns [col0, col1) and rows [row0, row1):
    (col1 - col0, row1 - row0) float32."""
    out = np.zeros((col1 - col0, row1 - row0), np.float32)
    for c in range(col1 - col0):
        _column_logits(protos_t, coefficients, col0 + c, row0, row1, out[c])
    return out


def _group_logits(protos_t: np.ndarray, coefficients: np.ndarray, ranges: np.ndarray, cell_offsets: np.ndarray,
                  out: np.ndarray) -> None:
    """Several instances' logits at once, as :func:`_proto_logits_t` gives them, into ``out`` (zeros): instance
    i's (columns, rows) block, flattened, starts at cell_offsets[i]; ranges[i] = col0, col1, row0, row1 (an
    empty column range for an instance without pixels). Grid column by grid column across the instances: one
    column of every prototype is ~20 KB, read from memory once and then from the cache for every instance whose
    box spans it, where instance by instance each would read all its box's prototype values from memory."""
    first = ranges[:, 0].min()
    stop = ranges[:, 1].max()
    for c in range(first, stop):
        for i in range(ranges.shape[0]):
            col0, col1, row0, row1 = ranges[i, 0], ranges[i, 1], ranges[i, 2], ranges[i, 3]
            if col0 <= c < col1:
                start = cell_offsets[i] + (c - col0) * (row1 - row0)
                _column_logits(protos_t, coefficients[i], c, row0, row1, out[start:start + row1 - row0])


def _bilinear_taps_into(start: int, lower: np.ndarray, upper: np.ndarray, weight: np.ndarray, in_size: int,
                        out_size: int, offset: int) -> None:
    """Taps of output pixels start, start + 1, ... (as many as ``lower`` holds) for bilinear resizing in_size ->
    out_size (align_corners=False), shifted by ``offset``; the float32 arithmetic of masks._bilinear_taps."""
    scale = np.float32(in_size) / np.float32(out_size)
    half = np.float32(0.5)
    zero = np.float32(0.0)
    for j in range(lower.shape[0]):
        src = scale * (np.float32(start + j) + half) - half
        if src < zero:
            src = zero
        lo = min(np.int64(src), in_size - 1)
        lower[j] = lo + offset
        upper[j] = min(lo + 1, in_size - 1) + offset
        weight[j] = np.float32(src - np.float32(lo))


def _grid_span(first: int, stop: int, in_size: int, out_size: int, offset: int, probe_lo: np.ndarray,
               probe_hi: np.ndarray, probe_w: np.ndarray) -> tuple[int, int]:
    """Grid indices [lo, hi) that the bilinear taps of output pixels [first, stop) read (as
    :func:`_bilinear_taps_into` gives them, shifted by ``offset``); probe_*: one-element scratch arrays. Taps never
    decrease along the output, so the first pixel's lower tap and the last one's upper tap bound them."""
    _bilinear_taps_into(first, probe_lo, probe_hi, probe_w, in_size, out_size, offset)
    lo = probe_lo[0]
    _bilinear_taps_into(stop - 1, probe_lo, probe_hi, probe_w, in_size, out_size, offset)
    return lo, probe_hi[0] + 1


# Logits of a group of instances computed together (see _group_logits) are held at once: by default at most this
# many grid cells (4 MiB), unless one instance needs more.
LOGIT_CELLS = 1 << 20


def _retina_runs(protos_t: np.ndarray, coefficients: np.ndarray, boxes: np.ndarray, crop_top: int,
                 crop_left: int, crop_height: int, crop_width: int, height: int, width: int,
                 logit_cells: int = LOGIT_CELLS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every instance's mask at image resolution inside its box, as runs, in one call.

    protos_t: (nm, grid columns, grid rows) float32; coefficients: (N, nm) float32; boxes: (N, 4) float32 xyxy
    image pixels. The image covers grid rows [crop_top, crop_top + crop_height) and columns [crop_left,
    crop_left + crop_width). Returns starts, ends (all instances' runs, concatenated) and offsets (N + 1,):
    instance i's runs are [offsets[i], offsets[i + 1]). Logits are computed for groups of instances holding at
    most ``logit_cells`` grid cells together (or one instance); the runs do not depend on it.
    """
    count = boxes.shape[0]
    offsets = np.zeros(count + 1, np.int64)
    # Room for one run per 32 box pixels (noisy masks have one per ~40) grows by doubling when exceeded; pages
    # never written cost nothing, and every copy or fresh page costs time (page faults dominate copying here).
    area = 0.0
    for i in range(count):
        area += max(np.float64(boxes[i, 2] - boxes[i, 0]), 0.0) * max(np.float64(boxes[i, 3] - boxes[i, 1]), 0.0)
    capacity = max(4096, int(area / 32))
    starts = np.empty(capacity, np.int64)
    ends = np.empty(capacity, np.int64)
    bounds = np.empty(4096, np.int64)  # scratch for one instance's sign changes, reused
    # Each box's pixels (x0, x1, y0, y1) and the grid cells its taps read (col0, col1, row0, row1; none if empty).
    spans = np.zeros((count, 4), np.int64)
    ranges = np.zeros((count, 4), np.int64)
    probe_lo, probe_hi, probe_w = np.empty(1, np.int64), np.empty(1, np.int64), np.empty(1, np.float32)
    for i in range(count):
        x0 = max(0, int(np.ceil(np.float64(boxes[i, 0]))))
        x1 = min(width, int(np.ceil(np.float64(boxes[i, 2]))))
        y0 = max(0, int(np.ceil(np.float64(boxes[i, 1]))))
        y1 = min(height, int(np.ceil(np.float64(boxes[i, 3]))))
        spans[i, 0], spans[i, 1], spans[i, 2], spans[i, 3] = x0, x1, y0, y1
        if x1 <= x0 or y1 <= y0:
            continue
        ranges[i, 0], ranges[i, 1] = _grid_span(x0, x1, crop_width, width, crop_left, probe_lo, probe_hi, probe_w)
        ranges[i, 2], ranges[i, 3] = _grid_span(y0, y1, crop_height, height, crop_top, probe_lo, probe_hi, probe_w)
    cell_offsets = np.empty(count, np.int64)
    total = 0
    first = 0
    while first < count:
        # The next group of instances whose logits fit in logit_cells together (at least one): computed
        # together, then turned into runs one instance at a time.
        stop, cells = first, 0
        while stop < count:
            size = (ranges[stop, 1] - ranges[stop, 0]) * (ranges[stop, 3] - ranges[stop, 2])
            if stop > first and cells + size > logit_cells:
                break
            cell_offsets[stop] = cells
            cells += size
            stop += 1
        logits = np.zeros(cells, np.float32)
        _group_logits(protos_t, coefficients[first:stop], ranges[first:stop], cell_offsets[first:stop], logits)
        for i in range(first, stop):
            x0, x1, y0, y1 = spans[i, 0], spans[i, 1], spans[i, 2], spans[i, 3]
            if x1 <= x0 or y1 <= y0:
                offsets[i + 1] = total
                continue
            row_lo = np.empty(y1 - y0, np.int64)
            row_hi = np.empty(y1 - y0, np.int64)
            row_w = np.empty(y1 - y0, np.float32)
            col_lo = np.empty(x1 - x0, np.int64)
            col_hi = np.empty(x1 - x0, np.int64)
            col_w = np.empty(x1 - x0, np.float32)
            _bilinear_taps_into(y0, row_lo, row_hi, row_w, crop_height, height, crop_top)
            _bilinear_taps_into(x0, col_lo, col_hi, col_w, crop_width, width, crop_left)
            col0, col1, row0, row1 = ranges[i, 0], ranges[i, 1], ranges[i, 2], ranges[i, 3]
            start = cell_offsets[i]
            grid_t = logits[start:start + (col1 - col0) * (row1 - row0)].reshape((col1 - col0, row1 - row0))
            needed = (x1 - x0) * (y1 - y0 + 1) + 2
            if needed > bounds.shape[0]:
                bounds = np.empty(max(needed, 2 * bounds.shape[0]), np.int64)
            found = _sign_changes(grid_t, col_lo - col0, col_hi - col0, col_w, row_lo - row0, row_hi - row0,
                                  row_w, x0, y0, height, bounds) // 2
            if total + found > starts.shape[0]:
                grown = max(2 * starts.shape[0], total + found)
                starts = np.concatenate((starts[:total], np.empty(grown - total, np.int64)))
                ends = np.concatenate((ends[:total], np.empty(grown - total, np.int64)))
            for r in range(found):
                starts[total + r] = bounds[2 * r]
                ends[total + r] = bounds[2 * r + 1]
            total += found
            offsets[i + 1] = total
        first = stop
    if 2 * total < starts.shape[0]:  # mostly unused room: give it back
        return starts[:total].copy(), ends[:total].copy(), offsets
    return starts[:total], ends[:total], offsets


if njit is not None:
    _sign_changes = njit(cache=True, nogil=True)(_sign_changes)
    _threshold_runs = threshold_runs = njit(cache=True, nogil=True)(_threshold_runs)
    _proto_logits_t = proto_logits_t = njit(cache=True, nogil=True)(_proto_logits_t)
    _bilinear_taps_into = njit(cache=True, nogil=True)(_bilinear_taps_into)
    _grid_span = njit(cache=True, nogil=True)(_grid_span)
    _column_logits = njit(cache=True, nogil=True)(_column_logits)
    _group_logits = njit(cache=True, nogil=True)(_group_logits)
    retina_runs = njit(cache=True, nogil=True)(_retina_runs)
else:  # pragma: no cover
    threshold_runs = proto_logits_t = retina_runs = None
