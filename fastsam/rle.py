"""Run-length encoded binary masks: the compact form in which results hold every instance.

Pixels are ordered column-major (as COCO's RLE), so index ``x * height + y`` is pixel (x, y). A mask is the
sorted list of its runs of ones ``[starts[k], ends[k])``. Area, point membership and the overlap with a box
are answered from the runs without decoding the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as coco_mask


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
        h = self.height
        x1 = int(self.starts[0] // h)
        x2 = int((self.ends[-1] - 1) // h) + 1
        first_cols = self.starts // h
        last_cols = (self.ends - 1) // h
        spans_column = last_cols > first_cols
        top = np.where(spans_column, 0, self.starts % h)
        bottom = np.where(spans_column, h, (self.ends - 1) % h + 1)
        return x1, int(top.min()), x2, int(bottom.max())

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
        return int((self._pixels_before(self.ends, x1, y1, x2, y2) - self._pixels_before(self.starts, x1, y1, x2, y2)).sum())

    def _pixels_before(self, flat: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
        # Box pixels with a flat index below `flat`: whole box columns before it plus part of its own column.
        col, row = np.divmod(flat, self.height)
        full_cols = np.clip(col, x1, x2) - x1
        in_col = (col >= x1) & (col < x2)
        return full_cols * (y2 - y1) + in_col * np.clip(row - y1, 0, y2 - y1)

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
        """Uncompressed COCO counts (alternating runs of zeros and ones, starting with zeros), uint32."""
        edges = np.empty(2 * self.starts.size + 2, np.int64)
        edges[0] = 0
        edges[1:-1:2] = self.starts
        edges[2:-1:2] = self.ends
        edges[-1] = self.height * self.width
        return np.diff(edges).astype(np.uint32)

    def to_coco(self) -> dict:
        """COCO compressed RLE: ``{'size': [h, w], 'counts': str}`` as pycocotools writes it."""
        # pycocotools takes the counts as an array directly; a Python list of them costs ~7x more.
        rle = coco_mask.frPyObjects({"size": [self.height, self.width], "counts": self.counts()}, self.height, self.width)
        return {"size": [self.height, self.width], "counts": rle["counts"].decode("ascii")}


def union(masks: list[RunLengthMask], height: int, width: int) -> RunLengthMask:
    """Pixel-wise OR of masks of one size."""
    if not masks:
        return RunLengthMask.empty(height, width)
    n = height * width
    starts = np.concatenate([m.starts for m in masks])
    ends = np.concatenate([m.ends for m in masks])
    steps = np.bincount(starts, minlength=n + 1) - np.bincount(ends, minlength=n + 1)
    covered = np.cumsum(steps[:-1]) > 0
    return RunLengthMask.from_mask(covered.reshape(width, height).T)
