"""Augmentations: known answers on hand-made images, and masks, boxes and pixels staying aligned through
letterbox, random affine, flips and mosaic (each instance is painted in its own colour, so a mask rasterised
from the transformed polygons must cover pixels of that colour)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam.errors import InvalidInputError
from fastsam.train.data import AugmentConfig, Sample, TrainingDataset
from fastsam.train.data.augment import (augment_hsv, flip, keep_candidates, letterbox, random_affine,
                                        resize_long_side)
from fastsam.train.data.mosaic import mosaic4
from fastsam.train.data.polygons import polygon_area, rasterize
from fastsam.train.data.sample import Annotations, segments_boxes

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
NONE = dict(hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, translate=0.0, scale=0.0, fliplr=0.0, mosaic=0.0)


def _rectangle(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


class PaintedSource:
    """In-memory source: grey images of varied sizes with four disjoint shapes, each painted in its colour
    (a rectangle covering pixels [x0, x1) x [y0, y1) has exactly the corners (x0, y0) ... (x1, y1))."""

    name = "painted"

    def __init__(self, count: int = 6) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def image_path(self, i: int) -> Path:
        return Path(f"painted_{i}.png")

    def _sample(self, i: int) -> tuple[np.ndarray, list[list[np.ndarray]]]:
        height, width = (150, 210) if i % 2 else (230, 160)
        image = np.full((height, width, 3), 128, np.uint8)
        w, h = width // 2, height // 2
        shapes = [
            _rectangle(5 + i, 6, w - 10, h - 5),
            _rectangle(w + 4, 8 + i, width - 6, h - 12),
            np.array([[10, height - 8], [w - 8, height - 8], [w / 2, h + 10]], np.float32),  # a triangle
            _rectangle(w + 12, h + 9, width - 3 - i, height - 4),
        ]
        masks = rasterize([[p] for p in shapes], height, width).astype(bool)
        for k, mask in enumerate(masks):
            image[mask] = COLOURS[k]
        return image, [[p] for p in shapes]

    def annotations(self, i: int) -> Annotations:
        image, segments = self._sample(i)
        return Annotations(image.shape[0], image.shape[1], segments)

    def load(self, i: int) -> Sample:
        image, segments = self._sample(i)
        return Sample(image, segments, segments_boxes(segments, image.shape[1], image.shape[0]))


def _check_aligned(image: np.ndarray, segments: list[list[np.ndarray]]) -> None:
    """Each instance's rasterised mask covers pixels of one instance colour: all of its interior (the mask
    eroded by one pixel), most of it with the edge, which interpolation blurs."""
    masks = rasterize(segments, image.shape[0], image.shape[1])
    for mask in masks:
        pixels = image[mask.astype(bool)].astype(np.int32)
        assert len(pixels)
        distances = np.abs(pixels[:, None, :] - COLOURS[None].astype(np.int32)).sum(axis=2)
        colour = np.bincount(distances.argmin(axis=1)).argmax()
        assert (distances[:, colour] < 90).mean() > 0.6
        interior = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        interior = interior.astype(bool)
        inside = np.abs(image[interior].astype(np.int32) - COLOURS[colour]).sum(axis=1)
        assert (inside < 90).mean() >= 0.97, (inside < 90).mean()


def _check_boxes_match_masks(item: dict, ratio: int) -> None:
    """Each box equals the box of its rasterised mask within two mask cells."""
    assert len(item["boxes"]) == len(item["masks"])
    for box, mask in zip(item["boxes"].numpy(), item["masks"].numpy()):
        ys, xs = np.nonzero(mask)
        assert len(xs), "an instance has an empty mask"
        cells = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32) * ratio
        np.testing.assert_allclose(box, cells, atol=2 * ratio)


@pytest.mark.parametrize("mode", ["letterbox", "affine", "flip", "mosaic", "recipe"])
def test_masks_boxes_and_pixels_stay_aligned(mode: str) -> None:
    settings = {"letterbox": None, "affine": dict(NONE, translate=0.1, scale=0.5, degrees=10.0, shear=2.0),
                "flip": dict(NONE, fliplr=1.0, flipud=1.0), "mosaic": dict(NONE, mosaic=1.0, scale=0.5, translate=0.1),
                "recipe": {}}[mode]
    hyp = AugmentConfig(**settings) if settings is not None else None
    dataset = TrainingDataset(PaintedSource(), 128, augment=settings is not None, hyp=hyp, mask_ratio=4, seed=3)
    instances = 0
    for epoch in range(2):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            image, segments = dataset.frame(i)
            assert image.shape == (128, 128, 3) and image.dtype == np.uint8
            if mode != "recipe":  # the recipe's HSV jitter changes the colours
                _check_aligned(image, segments)
            item = dataset[i]
            _check_boxes_match_masks(item, 4)
            instances += len(item["boxes"])
    assert instances >= (8 * len(dataset) if mode in ("letterbox", "flip") else len(dataset))


def test_letterbox_known_answer() -> None:
    image = np.zeros((50, 100, 3), np.uint8)
    out, segments = letterbox(image, [[_rectangle(10, 10, 30, 20)]], 64)
    assert out.shape == (64, 64, 3)
    # 100x50 -> 64x32, centred vertically: 16 rows of padding on top.
    assert (out[:16] == 114).all() and (out[48:] == 114).all() and (out[16:48] == 0).all()
    np.testing.assert_allclose(segments[0][0], _rectangle(6.4, 16 + 6.4, 19.2, 16 + 12.8), atol=1e-5)


def test_resize_long_side_scales_polygons() -> None:
    image, segments = resize_long_side(np.zeros((40, 80, 3), np.uint8), [[_rectangle(0, 0, 80, 40)]], 160, True)
    assert image.shape == (80, 160, 3)
    np.testing.assert_allclose(segments[0][0], _rectangle(0, 0, 160, 80))


def test_flip_known_answer() -> None:
    image = np.zeros((20, 40, 3), np.uint8)
    image[5:10, 2:8] = 255
    flipped, segments = flip(image, [[_rectangle(2, 5, 8, 10)]], horizontal=True)
    assert (flipped[5:10, 32:38] == 255).all() and flipped.sum() == image.sum()
    np.testing.assert_allclose(segments_boxes(segments, 40, 20)[0], [32, 5, 38, 10])
    upside_down, segments = flip(image, [[_rectangle(2, 5, 8, 10)]], horizontal=False)
    assert (upside_down[10:15, 2:8] == 255).all()
    np.testing.assert_allclose(segments_boxes(segments, 40, 20)[0], [2, 10, 8, 15])


def test_affine_without_randomness_is_identity() -> None:
    rng = np.random.default_rng(0)
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    segments = [[_rectangle(3, 4, 30, 40)], [_rectangle(40, 2, 60, 20)]]
    out, moved = random_affine(image, segments, 64, AugmentConfig(**NONE), rng)
    np.testing.assert_array_equal(out, image)
    for a, b in zip(moved, segments):
        np.testing.assert_allclose(a[0], b[0], atol=1e-4)


class HighDraws:
    """A stand-in generator whose every uniform draw is the top of its range: zoom 1 + scale, no shift."""

    def uniform(self, low: float, high: float, size: int | None = None):
        return np.full(size, high, np.float64) if size else high

    def random(self) -> float:
        return 1.0


def test_affine_zoom_clips_and_drops_instances() -> None:
    # A 1.5x zoom about the centre of a 100 x 100 input: a central box grows, one in the corner leaves the
    # output, a wide one is cut exactly at the border.
    segments = [[_rectangle(45, 45, 55, 55)], [_rectangle(0, 0, 10, 10)], [_rectangle(10, 40, 90, 60)]]
    _, moved = random_affine(np.zeros((100, 100, 3), np.uint8), segments, 100, AugmentConfig(**dict(NONE, scale=0.5)),
                             HighDraws())
    assert len(moved) == 2
    np.testing.assert_allclose(segments_boxes(moved, 100, 100), [[42.5, 42.5, 57.5, 57.5], [0, 35, 100, 65]],
                               atol=1e-4)
    assert len(moved[1][0]) == 4 and polygon_area(moved[1][0]) == pytest.approx(100 * 30, abs=1e-2)


def test_mosaic_places_tiles_around_the_centre() -> None:
    size = 64
    tiles = []
    for k in range(4):
        tiles.append((np.full((size, size, 3), COLOURS[k], np.uint8), [[_rectangle(0, 0, size, size)]]))
    canvas, segments = mosaic4(tiles, size, np.random.default_rng(7))
    assert canvas.shape == (2 * size, 2 * size, 3) and len(segments) == 4
    boxes = segments_boxes(segments, 2 * size, 2 * size)
    xc, yc = int(boxes[0, 2]), int(boxes[0, 3])  # the top-left tile ends at the centre
    assert size / 2 <= xc < 3 * size / 2 and size / 2 <= yc < 3 * size / 2
    expected = np.array([[xc - size, yc - size, xc, yc], [xc, yc - size, xc + size, yc],
                         [xc - size, yc, xc, yc + size], [xc, yc, xc + size, yc + size]], np.float32)
    np.testing.assert_allclose(boxes, expected.clip(0, 2 * size))  # tiles are cut at the canvas border
    for k, (x, y) in enumerate([(xc - 1, yc - 1), (xc, yc - 1), (xc - 1, yc), (xc, yc)]):
        assert (canvas[y, x] == COLOURS[k]).all()
    assert len({tuple(c) for c in canvas.reshape(-1, 3)}) <= 5  # four tiles and the grey


def test_hsv_keeps_grey_grey_and_zero_gains_identity() -> None:
    rng = np.random.default_rng(0)
    grey = np.full((8, 8, 3), 100, np.uint8)
    out = augment_hsv(grey, AugmentConfig(), rng)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert 60 - 1 <= out[0, 0, 0] <= 140 + 1
    image = np.random.default_rng(1).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(augment_hsv(image, AugmentConfig(**NONE), rng), image)


def test_keep_candidates_known_answers() -> None:
    before = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 100, 10], [0, 0, 10, 10]], np.float32)
    after = np.array([[0, 0, 10, 10], [0, 0, 2, 10], [0, 0, 100, 10], [0, 0, 3, 3]], np.float32)
    np.testing.assert_array_equal(keep_candidates(before, after), [True, False, True, False])


def test_items_are_deterministic_per_seed_epoch_and_index() -> None:
    source = PaintedSource()
    first = TrainingDataset(source, 96, augment=True, seed=5)
    second = TrainingDataset(source, 96, augment=True, seed=5)
    second.set_epoch(1)
    second.set_epoch(0)
    for i in (0, 3):
        a, b = first[i], second[i]
        for key in a:
            assert torch_equal(a[key], b[key])
    first.set_epoch(1)
    assert not torch_equal(first[0]["image"], second[0]["image"])
    other_seed = TrainingDataset(source, 96, augment=True, seed=6)
    assert not torch_equal(other_seed[0]["image"], second[0]["image"])


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_augment_config_validation() -> None:
    assert AugmentConfig().mosaic == 1.0 and AugmentConfig().fliplr == 0.5 and AugmentConfig().scale == 0.5
    for bad in (dict(fliplr=1.5), dict(scale=1.0), dict(hsv_h=-0.1), dict(degrees=float("nan")), dict(mosaic=True)):
        with pytest.raises(InvalidInputError):
            AugmentConfig(**bad)


def test_polygon_area_of_known_shapes() -> None:
    assert polygon_area(_rectangle(0, 0, 4, 3)) == 12
    assert polygon_area(np.array([[0, 0], [4, 0], [0, 3]], np.float32)) == 6
