"""Instance masks from prototypes, assembled one instance at a time inside its box.

The original builds a float (N, H, W) tensor at full resolution, upsamples all of it and then zeroes
everything outside each box. The same pixels come out of evaluating, for each instance, only the rows and
columns inside its box: bilinear interpolation is separable, so each output pixel needs two proto rows and two
proto columns. No full-resolution tensor for N instances is ever built.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from fastsam.inference.runs_kernel import proto_logits_t, retina_runs, threshold_runs
from fastsam.parallel import map_in_chunks
from fastsam.rle import RunLengthMask


def _bilinear_taps(dst: np.ndarray, in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source taps for bilinear resizing ``in_size`` -> ``out_size`` (align_corners=False, as
    ``F.interpolate``) at output coordinates ``dst``: lower index, upper index, weight of the upper index."""
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.maximum(scale * (dst.astype(np.float32) + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    lower = np.minimum(src.astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    return lower, upper, (src - lower).astype(np.float32)


def _bilinear_samples(grid_t: np.ndarray, row_taps: tuple, col_taps: tuple) -> np.ndarray:
    """(rows, columns) float32 bilinear samples of a transposed grid at taps indexing it; columns are combined
    first, then rows, the order F.interpolate's CPU kernel uses."""
    (r_lo, r_hi, r_w), (c_lo, c_hi, c_w) = row_taps, col_taps
    grid = torch.from_numpy(np.ascontiguousarray(grid_t.T))
    c_weight = torch.from_numpy(c_w)
    across = grid[:, torch.from_numpy(c_lo)] * (1 - c_weight) + grid[:, torch.from_numpy(c_hi)] * c_weight
    r_weight = torch.from_numpy(r_w)[:, None]
    return (across[torch.from_numpy(r_lo)] * (1 - r_weight) + across[torch.from_numpy(r_hi)] * r_weight).numpy()


def _pixel_span(lo: float, hi: float, limit: int) -> tuple[int, int]:
    """Integer pixels p with lo <= p < hi, clipped to [0, limit): returned as [start, stop)."""
    return max(0, math.ceil(lo)), min(limit, math.ceil(hi))


#: Chunks of instances per thread in :meth:`PrototypeMasks.encode_all` (measured on sa_8776 with 2 threads:
#: trained n84 masks 26 -> 22 ms with 8 chunks instead of 2, the same for noisy ones).
CHUNKS_PER_THREAD = 8


class PrototypeMasks:
    """Renders instance masks from mask prototypes and per-instance coefficients.

    protos: (nm, mh, mw) for the letterboxed input of ``input_size`` (h, w); coefficients: (N, nm);
    image_boxes: (N, 4) xyxy in image pixels (they crop the masks); input_boxes: the same boxes in input
    pixels (used by the non-retina path). ``retina`` upsamples the logits to the image resolution before
    thresholding; otherwise masks are computed at input resolution and mapped to the image by nearest neighbour.
    """

    def __init__(self, protos: torch.Tensor, coefficients: torch.Tensor, image_boxes: torch.Tensor,
                 input_boxes: torch.Tensor, input_size: tuple[int, int], image_size: tuple[int, int],
                 retina: bool = True, compiled: bool | None = None) -> None:
        self.protos = protos.float().contiguous().numpy()
        # Transposed (nm, mw, mh) once, so each instance's logits come out column-major, as the kernel reads them.
        self.protos_t = np.ascontiguousarray(self.protos.transpose(0, 2, 1))
        self.coefficients = coefficients.float().numpy()
        # The compiled kernel when numba is there (or as asked); otherwise tensor operations, same pixels.
        self.compiled = threshold_runs is not None if compiled is None else bool(compiled and threshold_runs)
        self.image_boxes = image_boxes.float().numpy()
        self.input_boxes = input_boxes.float().numpy()
        self.input_size = input_size
        self.image_size = image_size
        self.retina = retina
        _, mh, mw = self.protos.shape
        h, w = image_size
        # The image's part of the proto grid, with the original's rounding.
        gain = min(mh / h, mw / w)
        pad_x, pad_y = (mw - w * gain) / 2, (mh - h * gain) / 2
        self.crop_top, self.crop_left = int(pad_y), int(pad_x)
        self.crop_bottom, self.crop_right = int(mh - pad_y), int(mw - pad_x)

    def __len__(self) -> int:
        return self.coefficients.shape[0]

    def _logits_t(self, index: int, rows: range, cols: range) -> np.ndarray:
        """Mask logits (float32) of one instance on the proto grid, transposed: (len(cols), len(rows)). Summed
        over the prototypes in order, as the compiled kernel does, so both paths give the same pixels."""
        coefficients = self.coefficients[index]
        if self.compiled:
            return proto_logits_t(self.protos_t, coefficients, cols.start, cols.stop, rows.start, rows.stop)
        block = self.protos_t[:, cols.start:cols.stop, rows.start:rows.stop]
        logits = np.zeros(block.shape[1:], np.float32)
        for weight, proto in zip(coefficients, block):
            logits += weight * proto
        return logits

    def _encode_taps(self, logits_t_at: Callable[[range, range], np.ndarray], row_taps: tuple,
                     col_taps: tuple, x0: int, y0: int) -> RunLengthMask:
        """Bilinear samples at the taps (output pixels from (x0, y0)), thresholded at 0, as a run-length mask."""
        r_lo, r_hi, r_w = row_taps
        c_lo, c_hi, c_w = col_taps
        # Taps never decrease along the output, so the proto rows and columns they use lie in these ranges.
        rows = range(int(r_lo[0]), int(r_hi[-1]) + 1)
        cols = range(int(c_lo[0]), int(c_hi[-1]) + 1)
        grid_t = logits_t_at(rows, cols)
        ri_lo, ri_hi = r_lo - rows.start, r_hi - rows.start
        ci_lo, ci_hi = c_lo - cols.start, c_hi - cols.start
        h, w = self.image_size
        if self.compiled:
            starts, ends = threshold_runs(grid_t, ci_lo, ci_hi, c_w, ri_lo, ri_hi, r_w, x0, y0, h)
            return RunLengthMask(starts, ends, h, w)
        values = _bilinear_samples(grid_t, (ri_lo, ri_hi, r_w), (ci_lo, ci_hi, c_w))
        return RunLengthMask.from_crop(values > 0, x0, y0, h, w)

    def _retina_taps(self, index: int) -> tuple[tuple, tuple, int, int] | None:
        """Proto-grid taps of the image pixels inside instance ``index``'s box: (row taps, column taps, x0, y0),
        None when the box holds no pixel."""
        h, w = self.image_size
        x1, y1, x2, y2 = (float(v) for v in self.image_boxes[index])
        ys0, ys1 = _pixel_span(y1, y2, h)
        xs0, xs1 = _pixel_span(x1, x2, w)
        if ys1 <= ys0 or xs1 <= xs0:
            return None
        in_h = self.crop_bottom - self.crop_top
        in_w = self.crop_right - self.crop_left
        row_taps = _bilinear_taps(np.arange(ys0, ys1), in_h, h)
        col_taps = _bilinear_taps(np.arange(xs0, xs1), in_w, w)
        row_taps = (row_taps[0] + self.crop_top, row_taps[1] + self.crop_top, row_taps[2])
        col_taps = (col_taps[0] + self.crop_left, col_taps[1] + self.crop_left, col_taps[2])
        return row_taps, col_taps, xs0, ys0

    def probability_crop(self, index: int) -> tuple[np.ndarray, int, int]:
        """Mask probabilities (sigmoid of the upsampled logits) of instance ``index`` at image resolution inside
        its box: ((h, w) float32, x0, y0) with (x0, y0) the crop's top-left image pixel; an empty crop when the
        box holds no pixel. The logits thresholded at 0 (probability 0.5) give :meth:`encode`'s mask."""
        taps = self._retina_taps(index)
        if taps is None:
            return np.zeros((0, 0), np.float32), 0, 0
        (r_lo, r_hi, r_w), (c_lo, c_hi, c_w), x0, y0 = taps
        rows = range(int(r_lo[0]), int(r_hi[-1]) + 1)
        cols = range(int(c_lo[0]), int(c_hi[-1]) + 1)
        values = _bilinear_samples(self._logits_t(index, rows, cols), (r_lo - rows.start, r_hi - rows.start, r_w),
                                   (c_lo - cols.start, c_hi - cols.start, c_w))
        # tanh form of the sigmoid: no overflow for large negative logits.
        return (0.5 + 0.5 * np.tanh(0.5 * values)).astype(np.float32), x0, y0

    def encode(self, index: int) -> RunLengthMask:
        """Run-length mask of instance ``index`` in image pixels."""
        if not self.retina:
            return self._encode_input_resolution(index)
        if self.compiled:
            return self._compiled_retina(index, index + 1)[0]
        taps = self._retina_taps(index)
        if taps is None:
            return RunLengthMask.empty(*self.image_size)
        row_taps, col_taps, x0, y0 = taps
        return self._encode_taps(lambda r, c: self._logits_t(index, r, c), row_taps, col_taps, x0, y0)

    def _compiled_retina(self, first: int, stop: int) -> list[RunLengthMask]:
        """Instances [first, stop) at image resolution in one compiled call (no per-instance Python work)."""
        h, w = self.image_size
        starts, ends, offsets = retina_runs(
            self.protos_t, self.coefficients[first:stop], self.image_boxes[first:stop], self.crop_top,
            self.crop_left, self.crop_bottom - self.crop_top, self.crop_right - self.crop_left, h, w)
        return [RunLengthMask(starts[a:b], ends[a:b], h, w) for a, b in zip(offsets[:-1], offsets[1:])]

    def _encode_input_resolution(self, index: int) -> RunLengthMask:
        # Original non-retina path: logits cropped to the box on the proto grid, upsampled to the input size,
        # thresholded; then mapped to image pixels (nearest) through the unpadded part of the input.
        _, mh, mw = self.protos.shape
        in_h, in_w = self.input_size
        h, w = self.image_size
        bx1, by1, bx2, by2 = (float(v) for v in self.input_boxes[index])
        px1, px2 = bx1 * mw / in_w, bx2 * mw / in_w
        py1, py2 = by1 * mh / in_h, by2 * mh / in_h
        gain = min(in_h / h, in_w / w)
        top, left = int((in_h - h * gain) / 2), int((in_w - w * gain) / 2)
        bottom, right = int(in_h - (in_h - h * gain) / 2), int(in_w - (in_w - w * gain) / 2)
        # Image pixels whose input pixel lies within one proto cell of the box can be set.
        margin_x, margin_y = in_w / mw, in_h / mh
        def to_image(v: float, lo: int, hi: int, size: int) -> float:
            return (v - lo) * size / (hi - lo)
        xs0, xs1 = _pixel_span(to_image(bx1 - margin_x, left, right, w) - 1, to_image(bx2 + margin_x, left, right, w) + 1, w)
        ys0, ys1 = _pixel_span(to_image(by1 - margin_y, top, bottom, h) - 1, to_image(by2 + margin_y, top, bottom, h) + 1, h)
        if ys1 <= ys0 or xs1 <= xs0:
            return RunLengthMask.empty(h, w)
        in_rows = np.minimum(top + (np.arange(ys0, ys1) * (bottom - top)) // h, in_h - 1)
        in_cols = np.minimum(left + (np.arange(xs0, xs1) * (right - left)) // w, in_w - 1)
        row_taps = _bilinear_taps(in_rows, mh, in_h)
        col_taps = _bilinear_taps(in_cols, mw, in_w)

        def cropped_logits_t(rows: range, cols: range) -> np.ndarray:
            row_idx, col_idx = np.arange(rows.start, rows.stop), np.arange(cols.start, cols.stop)
            inside = ((col_idx >= px1) & (col_idx < px2))[:, None] & ((row_idx >= py1) & (row_idx < py2))[None, :]
            return self._logits_t(index, rows, cols) * inside

        return self._encode_taps(cropped_logits_t, row_taps, col_taps, xs0, ys0)

    def encode_all(self, threads: int | None = None) -> list[RunLengthMask]:
        """Every instance's run-length mask, in order. Compiled, at image resolution, the instances are split
        into contiguous chunks of similar box area, CHUNKS_PER_THREAD per thread (default: torch's thread count),
        run in parallel (the kernel releases the GIL); otherwise one instance at a time."""
        threads = torch.get_num_threads() if threads is None else max(1, int(threads))
        if not (self.compiled and self.retina):
            return [self.encode(i) for i in range(len(self))]
        # More chunks than threads: an instance's cost follows its mask's boundary more than its box, so threads
        # that finish early take the next chunk.
        pieces = CHUNKS_PER_THREAD * threads if len(self) >= 2 * threads else 1
        boxes = self.image_boxes
        area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None) + 1.0
        return map_in_chunks(self._compiled_retina, area, pieces, threads)
