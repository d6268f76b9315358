"""Compiled loops over run-length masks (numba, compiled on first use and cached on disk).

Most work on the runs directly, so their cost grows with the number of runs, never with the image's pixels:
the painter's merge of several masks, a mask's overlap with a box, and COCO's compressed count strings. The
one exception, :func:`paint_dense`, paints into a bit per pixel of the masks' span, for masks whose runs are
so many and so short that merging them would cost more than a pass over their span.
"""

from __future__ import annotations

import numpy as np
from numba import njit

try:  # an intrinsic (one tzcnt instruction), from a module numba does not promise to keep
    from numba.cpython.unsafe.numbers import trailing_zeros
except ImportError:  # pragma: no cover - only with a numba that moved it
    @njit(cache=True, nogil=True, inline="always")
    def trailing_zeros(word: np.uint64) -> int:
        count = 0
        while not word & np.uint64(1):
            word >>= np.uint64(1)
            count += 1
        return count


@njit(cache=True, nogil=True, inline="always")
def _sift_down(heap_pos: np.ndarray, heap_id: np.ndarray, size: int) -> None:
    # Restore the min-heap order after the root's position grew.
    i = 0
    position, ident = heap_pos[0], heap_id[0]
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and heap_pos[child + 1] < heap_pos[child]:
            child += 1
        if heap_pos[child] >= position:
            break
        heap_pos[i], heap_id[i] = heap_pos[child], heap_id[child]
        i = child
    heap_pos[i], heap_id[i] = position, ident


@njit(cache=True, nogil=True)
def paint_runs(starts: np.ndarray, ends: np.ndarray, offsets: np.ndarray, order: np.ndarray,
               paint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Painter's merge of K masks of a run table (mask m owns runs offsets[m]:offsets[m + 1]).

    Masks order[0], order[1], ... are painted in turn, the k-th setting its pixels to ``paint[k]`` (True adds
    them, False erases them), so a pixel takes the value of the last mask holding it, and is off when none
    does. Returns the runs of the result. A k-way merge of the run boundaries: O(runs * log K).
    """
    count = order.size
    cursor = np.empty(count, np.int64)
    stop = np.empty(count, np.int64)
    for k in range(count):
        cursor[k] = offsets[order[k]]
        stop[k] = offsets[order[k] + 1]
    inside = np.zeros(count, np.bool_)
    # Min-heap of each mask's next boundary; built by sorting, which is a valid heap.
    firsts = np.empty(count, np.int64)
    ids = np.empty(count, np.int64)
    size = 0
    total = 0
    for k in range(count):
        total += stop[k] - cursor[k]
        if cursor[k] < stop[k]:
            firsts[size] = starts[cursor[k]]
            ids[size] = k
            size += 1
    order = np.argsort(firsts[:size])
    heap_pos = firsts[:size][order].copy()
    heap_id = ids[:size][order].copy()
    only_adds = True
    for k in range(count):
        only_adds = only_adds and paint[k]
    capacity = total + 1
    out_starts = np.empty(capacity, np.int64)
    out_ends = np.empty(capacity, np.int64)
    n = 0
    active = 0
    top = -1  # the last-painted mask holding the current pixel
    value = False
    while size > 0:
        position = heap_pos[0]
        k = heap_id[0]
        # Each boundary is replaced in the heap by its mask's next one: one sift per boundary.
        if not inside[k]:
            inside[k] = True
            active += 1
            heap_pos[0] = ends[cursor[k]]
            if k > top:
                top = k
        else:
            inside[k] = False
            active -= 1
            cursor[k] += 1
            if cursor[k] < stop[k]:
                heap_pos[0] = starts[cursor[k]]
            else:
                size -= 1
                heap_pos[0], heap_id[0] = heap_pos[size], heap_id[size]
            if k == top and not only_adds:
                while top >= 0 and not inside[top]:
                    top -= 1
        _sift_down(heap_pos, heap_id, size)
        if size > 0 and heap_pos[0] == position:
            continue  # the pixels from here take the state after every boundary at this position
        now = active > 0 if only_adds else (top >= 0 and paint[top])
        if now != value:
            if now:
                out_starts[n] = position
            else:
                out_ends[n] = position
                n += 1
            value = now
    return out_starts[:n].copy(), out_ends[:n].copy()


@njit(cache=True, nogil=True)
def paint_dense(starts: np.ndarray, ends: np.ndarray, offsets: np.ndarray, order: np.ndarray,
                paint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same painter's merge as :func:`paint_runs`, through a bit per pixel of the span the masks cover:
    each run sets (or clears) its bits a word at a time, then the result's runs are the bits that differ from
    the one before, found a word at a time. O(span / 64 + runs): for many short runs (noisy masks) several
    times faster than the merge."""
    lo = np.int64(1) << 62
    hi = np.int64(0)
    total = 0
    for m in order:
        if offsets[m + 1] > offsets[m]:
            lo = min(lo, starts[offsets[m]])
            hi = max(hi, ends[offsets[m + 1] - 1])
            total += offsets[m + 1] - offsets[m]
    if hi <= lo:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    words = (hi - lo) // 64 + 1  # bit (p - lo) % 64 of word (p - lo) // 64 is pixel p; the last bit stays 0
    bits = np.zeros(words, np.uint64)
    full, zero, low6 = ~np.uint64(0), np.uint64(0), np.uint64(63)
    for k in range(order.size):
        add = paint[k]
        for i in range(offsets[order[k]], offsets[order[k] + 1]):
            a = np.uint64(starts[i] - lo)
            b = np.uint64(ends[i] - lo - 1)  # the run's last pixel
            first_word, last_word = a >> np.uint64(6), b >> np.uint64(6)
            # Selects rather than branches for a run within one word or across two: with noisy masks both
            # are common and unpredictable. Whole words between are filled by a loop, empty for short runs.
            head = full << (a & low6)
            tail = full >> (low6 - (b & low6))
            same = first_word == last_word
            first = head & tail if same else head
            last = zero if same else tail
            if add:
                bits[first_word] |= first
                for j in range(first_word + np.uint64(1), last_word):
                    bits[j] = full
                bits[last_word] |= last
            else:
                bits[first_word] &= ~first
                for j in range(first_word + np.uint64(1), last_word):
                    bits[j] = zero
                bits[last_word] &= ~last
    edges = np.empty(total * 2 + 2, np.int64)
    n = 0
    carry = np.uint64(0)  # the previous word's last bit, shifted into the first bit's place
    for j in range(words):
        word = bits[j]
        changed = word ^ ((word << np.uint64(1)) | carry)  # bit i: pixel i differs from the pixel before it
        carry = word >> low6
        while changed:
            edges[n] = lo + 64 * j + np.int64(trailing_zeros(changed))
            n += 1
            changed &= changed - np.uint64(1)
    return edges[0:n:2].copy(), edges[1:n:2].copy()


@njit(cache=True, nogil=True)
def holds(starts: np.ndarray, ends: np.ndarray, offsets: np.ndarray, masks: np.ndarray,
          positions: np.ndarray) -> np.ndarray:
    """For each pair k: whether mask masks[k] of a run table (runs offsets[m]:offsets[m + 1]) holds the flat
    pixel positions[k]. A binary search in that mask's runs."""
    out = np.zeros(masks.size, np.bool_)
    for k in range(masks.size):
        first, stop = offsets[masks[k]], offsets[masks[k] + 1]
        i = first + np.searchsorted(starts[first:stop], positions[k], side="right") - 1
        out[k] = i >= first and positions[k] < ends[i]
    return out


@njit(cache=True, nogil=True)
def box_overlap(starts: np.ndarray, ends: np.ndarray, height: int, x1: int, y1: int, x2: int, y2: int) -> int:
    """Pixels of the runs inside the box [x1, x2) x [y1, y2) (already clipped to the image)."""
    lo = np.searchsorted(ends, x1 * height, side="right")
    hi = np.searchsorted(starts, x2 * height, side="left")
    box_h = y2 - y1
    inverse = 1.0 / height
    total = 0
    for k in range(lo, hi):
        total += _box_pixels_before(ends[k], height, inverse, x1, y1, x2, box_h) - _box_pixels_before(
            starts[k], height, inverse, x1, y1, x2, box_h)
    return total


@njit(cache=True, nogil=True, inline="always")
def _column_of(flat: int, height: int, inverse: float) -> int:
    # flat // height for 0 <= flat < 2**52 through a float product, corrected by one where it rounded across a
    # column boundary: an integer division here costs several times more and runs once per run.
    col = np.int64(flat * inverse)
    if col * height > flat:
        col -= 1
    elif (col + 1) * height <= flat:
        col += 1
    return col


@njit(cache=True, nogil=True, inline="always")
def _box_pixels_before(flat: int, height: int, inverse: float, x1: int, y1: int, x2: int, box_h: int) -> int:
    # Box pixels with a flat index below `flat`: whole box columns before its column plus part of its own.
    col = _column_of(flat, height, inverse)
    row = flat - col * height
    if col < x1:
        return 0
    if col >= x2:
        return (x2 - x1) * box_h
    return (col - x1) * box_h + min(max(row - y1, 0), box_h)


@njit(cache=True, nogil=True)
def coco_string(starts: np.ndarray, ends: np.ndarray, total: int) -> np.ndarray:
    """COCO's compressed RLE string (as bytes) of the runs of a mask of ``total`` pixels: the uncompressed
    counts (zeros, ones, zeros, ...; no trailing zero count after a mask that reaches the last pixel, as
    pycocotools), each minus the count two before it from the third on, in 5-bit groups with a continuation
    bit, offset into printable ASCII from '0'."""
    size = 2 * starts.size + 1
    if size > 1 and ends[starts.size - 1] == total:
        size -= 1
    counts = np.empty(size, np.int64)
    previous_end = 0
    for k in range(starts.size):
        counts[2 * k] = starts[k] - previous_end
        counts[2 * k + 1] = ends[k] - starts[k]
        previous_end = ends[k]
    if size & 1:
        counts[size - 1] = total - previous_end
    out = np.empty(size * 7 + 2, np.uint8)
    n = 0
    for i in range(size):
        x = counts[i]
        if i > 2:
            x -= counts[i - 2]
        # Characters needed for x as a signed number, counted without branches: with noisy masks short and
        # long counts alternate unpredictably. Two are always written, then kept as far as needed.
        magnitude = x if x >= 0 else ~x
        groups = np.int64(1)
        groups += magnitude >= 16
        groups += magnitude >= 512
        groups += magnitude >= 16384
        groups += magnitude >= 524288
        groups += magnitude >= 16777216
        groups += magnitude >= 536870912
        out[n] = np.uint8(48 + ((x & 0x1F) | (0x20 if groups > 1 else 0)))
        out[n + 1] = np.uint8(48 + (((x >> 5) & 0x1F) | (0x20 if groups > 2 else 0)))
        if groups > 2:
            for g in range(2, groups):
                out[n + g] = np.uint8(48 + (((x >> (5 * g)) & 0x1F) | (0x20 if groups > g + 1 else 0)))
        n += groups
    return out[:n]


@njit(cache=True, nogil=True)
def run_bounds(starts: np.ndarray, ends: np.ndarray, height: int) -> tuple[int, int, int, int]:
    """Tight box (x1, y1, x2, y2), exclusive max corner, of non-empty runs in an image ``height`` tall."""
    first_col = starts[0] // height
    last_col = (ends[-1] - 1) // height
    top, bottom = height, 0
    inverse = 1.0 / height
    for k in range(starts.size):
        column_start = _column_of(starts[k], height, inverse) * height
        if ends[k] > column_start + height:  # a run over a column boundary covers the whole height between
            return first_col, 0, last_col + 1, height
        top = min(top, starts[k] - column_start)
        bottom = max(bottom, ends[k] - column_start)
    return first_col, top, last_col + 1, bottom


@njit(cache=True, nogil=True)
def coco_fields(starts: np.ndarray, ends: np.ndarray, offsets: np.ndarray, first: int, stop: int, height: int,
                total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """COCO fields of masks first..stop-1 of a run table (mask m owns runs offsets[m]:offsets[m + 1]) of
    ``total``-pixel masks ``height`` tall, in one call: their :func:`coco_string` characters back to back with
    (stop - first + 1,) offsets into them, areas, and tight boxes (x1, y1, x2, y2; zeros when empty)."""
    count = stop - first
    room = 0
    for m in range(first, stop):
        room += (2 * (offsets[m + 1] - offsets[m]) + 1) * 7 + 2
    chars = np.empty(room, np.uint8)
    char_offsets = np.zeros(count + 1, np.int64)
    areas = np.zeros(count, np.int64)
    boxes = np.zeros((count, 4), np.int64)
    n = 0
    for k in range(count):
        a, b = offsets[first + k], offsets[first + k + 1]
        text = coco_string(starts[a:b], ends[a:b], total)
        chars[n:n + text.size] = text
        n += text.size
        char_offsets[k + 1] = n
        area = 0
        for i in range(a, b):
            area += ends[i] - starts[i]
        areas[k] = area
        if b > a:
            x1, y1, x2, y2 = run_bounds(starts[a:b], ends[a:b], height)
            boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3] = x1, y1, x2, y2
    return chars[:n], char_offsets, areas, boxes
