"""Run-length masks: set operations, box overlaps and COCO strings agree with the decoded pixels."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fastsam import rle_kernels
from fastsam.rle import RunLengthMask, RunTable, paint, subtract, union


def _random_mask(rng: np.random.Generator, height: int, width: int, density: float) -> np.ndarray:
    # Blocky noise: long runs, runs that cross column boundaries, and isolated pixels.
    coarse = rng.random((height // 3 + 1, width // 3 + 1)) < density
    mask = np.kron(coarse, np.ones((3, 3), bool))[:height, :width]
    flips = rng.random((height, width)) < 0.05
    return mask ^ flips


@pytest.mark.parametrize("seed", range(6))
def test_union_and_subtract_match_pixels(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    masks = [_random_mask(rng, h, w, d) for d in (0.3, 0.5, 0.0, 0.9)]
    rles = [RunLengthMask.from_mask(m) for m in masks]
    np.testing.assert_array_equal(union(rles, h, w).decode(), np.logical_or.reduce(masks))
    for a, b in [(0, 1), (1, 0), (0, 2), (2, 0), (3, 1)]:
        got = subtract(rles[a], rles[b])
        np.testing.assert_array_equal(got.decode(), masks[a] & ~masks[b])
        # Canonical runs: sorted, non-empty, never touching, so equal masks have equal runs.
        assert np.all(got.ends > got.starts) and np.all(got.starts[1:] > got.ends[:-1])


@pytest.mark.parametrize("seed", range(8))
def test_both_painters_match_painting_the_pixels(seed):
    # paint() picks the run merge or the byte painter by cost; each must give the canonical runs of painting
    # the pixels in order (adds set them, erases clear them), whatever the span's length modulo 8.
    rng = np.random.default_rng(40 + seed)
    h, w = int(rng.integers(1, 50)), int(rng.integers(1, 50))
    masks = [_random_mask(rng, h, w, float(rng.random())) for _ in range(int(rng.integers(1, 7)))]
    if seed == 0:
        masks.append(np.ones((h, w), bool))  # reaches the last pixel
    adds = rng.random(len(masks)) < 0.7
    expected = np.zeros((h, w), bool)
    for mask, add in zip(masks, adds):
        expected[mask] = add
    rles = [RunLengthMask.from_mask(m) for m in masks]
    # The painters read the masks from a table in another order (plus a mask that is never painted).
    stored = rng.permutation(len(rles))
    table = RunTable.from_masks([rles[k] for k in stored] + [RunLengthMask.from_mask(~masks[0])])
    order = np.argsort(stored)  # table row of rles[k]
    reference = RunLengthMask.from_mask(expected)
    for painter in (rle_kernels.paint_runs, rle_kernels.paint_dense):
        got_starts, got_ends = painter(table.starts, table.ends, table.offsets, order, adds)
        np.testing.assert_array_equal(got_starts, reference.starts)
        np.testing.assert_array_equal(got_ends, reference.ends)
    np.testing.assert_array_equal(table.paint(order, adds).decode(), expected)
    np.testing.assert_array_equal(paint(rles, list(adds)).decode(), expected)


@pytest.mark.parametrize("seed", range(4))
def test_run_table_holds_matches_pixels(seed):
    rng = np.random.default_rng(70 + seed)
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    masks = [_random_mask(rng, h, w, d) for d in (0.0, 0.4, 0.8, 1.0)]
    table = RunTable.from_masks([RunLengthMask.from_mask(m) for m in masks])
    which = rng.integers(0, len(masks), 300)
    xs, ys = rng.integers(0, w, 300), rng.integers(0, h, 300)
    expected = np.array([masks[m][y, x] for m, x, y in zip(which, xs, ys)])
    np.testing.assert_array_equal(table.holds(which, xs, ys), expected)
    for k, mask in enumerate(masks):
        np.testing.assert_array_equal(table.mask(k).decode(), mask)


def test_run_table_rejects_bad_paint_requests():
    table = RunTable.from_masks([RunLengthMask.empty(3, 4)] * 2)
    with pytest.raises(ValueError, match="at least one"):
        table.paint([], [])
    with pytest.raises(ValueError, match="flags"):
        table.paint([0, 1], [True])
    with pytest.raises(IndexError):
        table.paint([2], [True])
    assert table.paint([1, 0], [True, False]).area == 0
    assert len(RunTable.empty(3, 4)) == 0


def test_union_of_touching_runs_is_one_run():
    h, w = 4, 3
    left = RunLengthMask(np.array([0]), np.array([4]), h, w)  # column 0
    right = RunLengthMask(np.array([4]), np.array([8]), h, w)  # column 1
    merged = union([left, right], h, w)
    assert merged.starts.tolist() == [0] and merged.ends.tolist() == [8]


def test_set_operations_reject_mixed_sizes():
    with pytest.raises(ValueError, match="different sizes"):
        subtract(RunLengthMask.empty(3, 4), RunLengthMask.empty(4, 3))
    with pytest.raises(ValueError):
        union([RunLengthMask.empty(3, 4)], 4, 3)


@pytest.mark.parametrize("seed", range(4))
def test_box_overlap_matches_pixels(seed):
    rng = np.random.default_rng(100 + seed)
    h, w = int(rng.integers(5, 50)), int(rng.integers(5, 50))
    mask = _random_mask(rng, h, w, 0.5)
    rle = RunLengthMask.from_mask(mask)
    for _ in range(20):
        x1, x2 = sorted(rng.integers(-3, w + 3, 2))
        y1, y2 = sorted(rng.integers(-3, h + 3, 2))
        expected = mask[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)].sum()
        assert rle.box_overlap(x1, y1, x2, y2) == expected


@pytest.mark.parametrize("seed", range(4))
def test_coco_strings_match_pycocotools(seed):
    rng = np.random.default_rng(200 + seed)
    h, w = int(rng.integers(1, 60)), int(rng.integers(1, 60))
    mask = _random_mask(rng, h, w, float(rng.random()))
    rle = RunLengthMask.from_mask(mask).to_coco()
    reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle["counts"] == reference["counts"].decode("ascii")
    assert rle["size"] == [h, w]
    np.testing.assert_array_equal(RunLengthMask.from_coco(rle).decode(), mask)


@pytest.mark.parametrize("height", [3, 7, 999, 4099, 65537])
def test_box_overlap_finds_columns_of_large_flat_indices(height):
    # The column of a run boundary comes from a float product, corrected where it rounds across a column
    # boundary: runs ending exactly at, just before and just after column boundaries, on tall and short images.
    width = 64
    flats = np.array([c * height + d for c in range(1, width) for d in (-1, 0, 1)], np.int64)
    starts, ends = flats[0:-1:2], flats[1::2]
    mask = np.zeros(height * width, bool)
    for a, b in zip(starts, ends):
        mask[a:b] = True
    mask = mask.reshape(width, height).T
    rle = RunLengthMask.from_mask(mask)
    for x1, y1, x2, y2 in [(0, 0, width, height), (3, 1, 40, height - 1), (10, 0, 11, 2), (5, height // 2, 63, height)]:
        assert rle.box_overlap(x1, y1, x2, y2) == mask[y1:y2, x1:x2].sum()


@pytest.mark.parametrize("seed", range(6))
def test_bbox_matches_pixels(seed):
    rng = np.random.default_rng(300 + seed)
    h, w = int(rng.integers(1, 30)), int(rng.integers(1, 30))
    mask = np.zeros((h, w), bool)
    if seed % 3:  # seed 0 and 3: empty; the others: a random patch, sometimes whole columns
        y1, y2 = sorted(rng.integers(0, h + 1, 2)) if seed % 2 else (0, h)
        x1, x2 = sorted(rng.integers(0, w + 1, 2))
        mask[y1:y2 + 1, x1:x2 + 1] = rng.random((min(y2 + 1, h) - y1, min(x2 + 1, w) - x1)) < 0.7
    assert RunLengthMask.from_mask(mask).bbox() == _pixel_bbox(mask)


def _pixel_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if xs.size else (0, 0, 0, 0)


@pytest.mark.parametrize("shape", [(1500, 2250), (4000, 3000), (7, 3)])
def test_coco_strings_of_long_and_alternating_counts_match_pycocotools(shape):
    # Counts of every size, so that strings need 1 to 7 characters per count and deltas of both signs; plus the
    # empty and the full mask (no trailing zero count).
    h, w = shape
    rng = np.random.default_rng(h)
    flat = np.zeros(h * w, bool)
    position = 0
    while position < flat.size:
        length = int(rng.choice([1, 2, 15, 16, 17, 511, 512, 600, 16384, 20000, 600000]))
        flat[position:position + length] = rng.random() < 0.5
        position += length
    for mask in (flat.reshape(w, h).T, np.zeros((h, w), bool), np.ones((h, w), bool)):
        reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle = RunLengthMask.from_mask(mask)
        assert rle.to_coco()["counts"] == reference["counts"].decode("ascii")
        assert rle.bbox() == _pixel_bbox(mask)
