"""Run-length encoded binary masks: the compact form in which results hold every instance.

Pixels are ordered column-major (as COCO's RLE), so index ``x * height + y`` is pixel (x, y). A mask is the
sorted list of its runs of ones ``[starts[k], ends[k])``. Area, point membership and the overlap with a box
are answered from the runs without decoding the mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pycocotools import mask as coco_mask

from fastsam import rle_kernels


@dataclass(frozen=True, eq=False)
class RunLengthMask:
    """Binary mask of ``height`` x ``width`` pixels stored as runs of ones (int64 flat column-major indices)."""

    starts: np.ndarray
    ends: np.ndarray
    height: int
    width: int

    # ----------------------------------------------------------------------------------------- construction
    @classmethod
    def empty(cls, height: int, width: int) -> "RunLengthMask":
        none = np.zeros(0, np.int64)
        return cls(none, none, int(height), int(width))

    @classmethod
    def from_crop(cls, crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> "RunLengthMask":
        """Encode a (h, w) boolean crop whose top-left pixel is (x0, y0) inside a height x width image."""
        h, w = crop.shape
        if h == 0 or w == 0 or not crop.any():
            return cls.empty(height, width)
        # A zero after every column (and one before the first) makes each run start and end in its column.
        padded = np.zeros((w, h + 1), bool)
        padded[:, :h] = crop.T
        flat_crop = np.concatenate(([False], padded.ravel()))
        edges = np.flatnonzero(flat_crop[1:] != flat_crop[:-1])
        cols, rows = np.divmod(edges, h + 1)
        flat = (cols + x0) * height + y0 + rows
        starts, ends = flat[0::2], flat[1::2]
        # A run that reaches the bottom of a column and restarts at the top of the next one is one run.
        joined = np.flatnonzero(ends[:-1] == starts[1:])
        if joined.size:
            starts = np.delete(starts, joined + 1)
            ends = np.delete(ends, joined)
        return cls(starts, ends, int(height), int(width))

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> "RunLengthMask":
        """Encode a full (height, width) boolean mask."""
        mask = np.asarray(mask, dtype=bool)
        return cls.from_crop(mask, 0, 0, mask.shape[0], mask.shape[1])

    @classmethod
    def from_coco(cls, rle: dict) -> "RunLengthMask":
        """Decode a COCO RLE dict (compressed string or uncompressed list counts)."""
        height, width = (int(v) for v in rle["size"])
        if isinstance(rle.get("counts"), list):
            rle = coco_mask.frPyObjects(rle, height, width)
        elif isinstance(rle.get("counts"), str):
            rle = {"size": [height, width], "counts": rle["counts"].encode("ascii")}
        return cls.from_mask(coco_mask.decode(rle).astype(bool))

    # --------------------------------------------------------------------------------------------- queries
    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def area(self) -> int:
        return int((self.ends - self.starts).sum())

    def bbox(self) -> tuple[int, int, int, int]:
        """Tight box (x1, y1, x2, y2), exclusive max corner; (0, 0, 0, 0) when empty."""
        if self.starts.size == 0:
            return 0, 0, 0, 0
        return tuple(int(v) for v in rle_kernels.run_bounds(self.starts, self.ends, self.height))

    def contains(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Whether each pixel (xs[k], ys[k]) (integers inside the image) is in the mask."""
        flat = np.asarray(xs, np.int64) * self.height + np.asarray(ys, np.int64)
        if self.starts.size == 0:
            return np.zeros(flat.shape, bool)
        k = np.searchsorted(self.starts, flat, side="right") - 1
        valid = k >= 0
        return valid & (flat < self.ends[np.maximum(k, 0)])

    def box_overlap(self, x1: int, y1: int, x2: int, y2: int) -> int:
        """Number of mask pixels inside the integer box [x1, x2) x [y1, y2) (clipped to the image)."""
        x1, x2 = max(int(x1), 0), min(int(x2), self.width)
        y1, y2 = max(int(y1), 0), min(int(y2), self.height)
        if x2 <= x1 or y2 <= y1 or self.starts.size == 0:
            return 0
        return int(rle_kernels.box_overlap(self.starts, self.ends, self.height, x1, y1, x2, y2))

    # ------------------------------------------------------------------------------------------- decoding
    def decode(self) -> np.ndarray:
        """Full (height, width) boolean mask."""
        return self.decode_region(0, 0, self.width, self.height)

    def decode_region(self, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
        """Boolean mask of the pixels [x1, x2) x [y1, y2), shape (y2 - y1, x2 - x1)."""
        h = self.height
        lo, hi = x1 * h, x2 * h
        k0 = np.searchsorted(self.ends, lo, side="right")
        k1 = np.searchsorted(self.starts, hi, side="left")
        starts = np.clip(self.starts[k0:k1], lo, hi) - lo
        ends = np.clip(self.ends[k0:k1], lo, hi) - lo
        n = (x2 - x1) * h
        steps = np.bincount(starts, minlength=n + 1) - np.bincount(ends, minlength=n + 1)
        columns = np.cumsum(steps[:-1]).astype(bool).reshape(x2 - x1, h)
        return np.ascontiguousarray(columns[:, y1:y2].T)

    def counts(self) -> np.ndarray:
        """Uncompressed COCO counts (alternating runs of zeros and ones, starting with zeros), uint32. As
        pycocotools, no zero-length run of zeros is written after a mask that reaches the last pixel."""
        edges = np.empty(2 * self.starts.size + 2, np.int64)
        edges[0] = 0
        edges[1:-1:2] = self.starts
        edges[2:-1:2] = self.ends
        edges[-1] = self.height * self.width
        counts = np.diff(edges).astype(np.uint32)
        if counts.size > 1 and counts[-1] == 0:
            counts = counts[:-1]
        return counts

    def to_coco(self) -> dict:
        """COCO compressed RLE: ``{'size': [h, w], 'counts': str}``, the string pycocotools writes."""
        counts = rle_kernels.coco_string(self.starts, self.ends, self.height * self.width)
        return {"size": [self.height, self.width], "counts": counts.tobytes().decode("ascii")}


def _check_same_size(masks: Sequence[RunLengthMask]) -> tuple[int, int]:
    sizes = {m.size for m in masks}
    if len(sizes) > 1:
        raise ValueError(f"masks of different sizes cannot be combined: {sorted(sizes)}")
    return sizes.pop()


@dataclass(frozen=True, eq=False)
class RunTable:
    """The runs of N masks of one size in shared arrays: mask i's runs are ``starts[offsets[i]:offsets[i + 1]]``
    (and ``ends``), so that a query over many masks is one compiled call, without gathering their runs."""

    starts: np.ndarray
    ends: np.ndarray
    offsets: np.ndarray
    height: int
    width: int

    @classmethod
    def empty(cls, height: int, width: int) -> "RunTable":
        """A table of no masks."""
        none = np.zeros(0, np.int64)
        return cls(none, none, np.zeros(1, np.int64), int(height), int(width))

    @classmethod
    def from_masks(cls, masks: Sequence[RunLengthMask]) -> "RunTable":
        """Copy the masks' runs into one table (masks of one size; at least one mask)."""
        if not masks:
            raise ValueError("a run table needs at least one mask")
        height, width = _check_same_size(masks)
        offsets = np.zeros(len(masks) + 1, np.int64)
        np.cumsum([m.starts.size for m in masks], out=offsets[1:])
        starts = np.concatenate([m.starts for m in masks]).astype(np.int64, copy=False)
        ends = np.concatenate([m.ends for m in masks]).astype(np.int64, copy=False)
        return cls(starts, ends, offsets, height, width)

    def __len__(self) -> int:
        return self.offsets.size - 1

    def mask(self, index: int) -> RunLengthMask:
        """Mask ``index`` (its runs are views into the table)."""
        first, stop = self.offsets[index], self.offsets[index + 1]
        return RunLengthMask(self.starts[first:stop], self.ends[first:stop], self.height, self.width)

    def holds(self, masks: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """For each k: whether mask masks[k] holds pixel (xs[k], ys[k]) (integers inside the image)."""
        positions = np.asarray(xs, np.int64) * self.height + np.asarray(ys, np.int64)
        return rle_kernels.holds(self.starts, self.ends, self.offsets, np.asarray(masks, np.int64), positions)

    def paint(self, order: Sequence[int], adds: Sequence[bool]) -> RunLengthMask:
        """Masks order[0], order[1], ... painted in turn: ``adds[k]`` True adds the k-th one's pixels, False
        erases them (a pixel keeps the value of the last mask holding it). Computed on the runs (a k-way merge)
        or, for many short runs, on a bit per pixel of the span they cover, whichever costs less; never decoded
        to a full mask."""
        order = np.asarray(order, np.int64).reshape(-1)
        if order.size == 0:
            raise ValueError("paint needs at least one mask")
        if len(adds) != order.size:
            raise ValueError(f"{order.size} masks but {len(adds)} add/erase flags")
        if order.min() < 0 or order.max() >= len(self):
            raise IndexError(f"mask index out of range for a table of {len(self)} masks")
        first, stop = self.offsets[order], self.offsets[order + 1]
        runs = int((stop - first).sum())
        held = stop > first
        span = int(self.ends[stop[held] - 1].max() - self.starts[first[held]].min()) if held.any() else 0
        # Rough costs measured here (ns): the merge pays a heap sift per run boundary, the bit painter a few
        # word operations per run plus a pass over its span's words.
        merge_cost = 24 * runs * np.log2(order.size + 1)
        dense_cost = span / 32 + 8 * runs
        painter = rle_kernels.paint_dense if dense_cost < merge_cost else rle_kernels.paint_runs
        flags = np.asarray(adds, np.bool_)
        return RunLengthMask(*painter(self.starts, self.ends, self.offsets, order, flags), self.height, self.width)


def paint(masks: Sequence[RunLengthMask], adds: Sequence[bool]) -> RunLengthMask:
    """Masks of one size painted in order (see :meth:`RunTable.paint`): ``adds[k]`` True adds mask k's pixels,
    False erases them."""
    if not masks:
        raise ValueError("paint needs at least one mask")
    return RunTable.from_masks(masks).paint(np.arange(len(masks)), adds)


def union(masks: Sequence[RunLengthMask], height: int, width: int) -> RunLengthMask:
    """Pixel-wise OR of masks of size (height, width)."""
    if not masks:
        return RunLengthMask.empty(height, width)
    if _check_same_size(masks) != (height, width):
        raise ValueError(f"masks are {masks[0].size}, not ({height}, {width})")
    return paint(masks, [True] * len(masks))


def subtract(mask: RunLengthMask, other: RunLengthMask) -> RunLengthMask:
    """Pixels of ``mask`` that are not in ``other`` (same size)."""
    return paint([mask, other], [True, False])
