"""Simple Copy-Paste: known answers on hand-made squares (occluded parts leave the masks, boxes shrink to what
stays visible, hidden instances go), pixels, masks and boxes aligned on painted images, determinism per
(seed, epoch, index), and items it leaves alone unchanged."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fastsam.errors import InvalidInputError
from fastsam.train.data import AugmentConfig, TrainingDataset
from fastsam.train.data.copy_paste import copy_paste
from tests.test_augment import COLOURS, NONE, PaintedSource, _check_boxes_match_masks, _rectangle

SIZE, RATIO = 64, 4


def _square_images() -> tuple[np.ndarray, np.ndarray]:
    return np.full((SIZE, SIZE, 3), 10, np.uint8), np.full((SIZE, SIZE, 3), 200, np.uint8)


def test_pasted_instance_hides_what_it_covers_and_boxes_follow_the_visible_part() -> None:
    image, donor = _square_images()
    receiving = [[_rectangle(8, 8, 56, 56)], [_rectangle(40, 20, 50, 30)]]  # the second lies under the paste
    pasted = [[_rectangle(32, 0, 64, 64)]]  # the right half of the image, top to bottom
    composed, boxes, masks = copy_paste(image, receiving, donor, pasted, RATIO, np.random.default_rng(0))

    assert (composed[:, 33:] == 200).all() and (composed[:, :31] == 10).all()
    assert masks.shape == (2, SIZE // RATIO, SIZE // RATIO) and len(boxes) == 2  # the hidden square is dropped
    big, paste = masks.astype(bool)
    assert not big[:, 8:].any()  # occluded cells removed
    assert big[3:13, 3:7].all()  # the visible part stays
    np.testing.assert_allclose(boxes[0], [8, 8, 32, 56], atol=1)  # recomputed from the visible pixels
    assert paste[:, 8:].all() and not paste[:, :8].any()
    np.testing.assert_allclose(boxes[1], [32, 0, 64, 64], atol=1)


def test_instances_the_paste_misses_keep_their_masks_and_boxes() -> None:
    image, donor = _square_images()
    receiving = [[_rectangle(4, 4, 20, 20)]]
    pasted = [[_rectangle(40, 40, 60, 60)]]
    _, boxes, masks = copy_paste(image, receiving, donor, pasted, RATIO, np.random.default_rng(0))
    np.testing.assert_allclose(boxes[0], [4, 4, 20, 20])
    assert masks[0, 1:5, 1:5].all() and masks[0].sum() == 16


def test_paste_onto_an_image_without_instances_gives_the_pasted_ones() -> None:
    # Augmentation can crop every instance out of an image; run 9 of the campaign met one in its 11th epoch.
    image, donor = _square_images()
    pasted = [[_rectangle(40, 40, 60, 60)]]
    composed, boxes, masks = copy_paste(image, [], donor, pasted, RATIO, np.random.default_rng(0))
    assert masks.shape == (1, SIZE // RATIO, SIZE // RATIO) and boxes.shape == (1, 4)
    np.testing.assert_allclose(boxes[0], [40, 40, 60, 60])
    assert masks[0, 10:15, 10:15].all() and masks[0].sum() == 25
    assert (composed[40:60, 40:60] == 200).all() and (composed[:40] == 10).all()


def test_copy_paste_rejects_mismatched_images() -> None:
    image, donor = _square_images()
    with pytest.raises(InvalidInputError):
        copy_paste(image, [], donor[:32], [], RATIO, np.random.default_rng(0))
    with pytest.raises(InvalidInputError):
        copy_paste(image, [], donor, [], 3, np.random.default_rng(0))


def _check_masks_cover_one_colour(image: np.ndarray, masks: np.ndarray) -> int:
    """Each mask's interior (upsampled, eroded by a cell) is pixels of a single instance colour; returns how
    many masks had an interior to check."""
    checked = 0
    for mask in masks:
        fine = cv2.erode(np.kron(mask, np.ones((RATIO, RATIO), np.uint8)), np.ones((2 * RATIO + 1,) * 2, np.uint8),
                         borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        if not fine.any():
            continue
        pixels = image[fine].astype(np.int32)
        distances = np.abs(pixels[:, None, :] - COLOURS[None].astype(np.int32)).sum(axis=2)
        colour = np.bincount(distances.argmin(axis=1)).argmax()
        assert (distances[:, colour] < 90).mean() >= 0.97
        checked += 1
    return checked


def test_pixels_masks_and_boxes_stay_aligned_with_copy_paste() -> None:
    hyp = AugmentConfig(**dict(NONE, scale=0.5, translate=0.1, copy_paste=1.0))
    dataset = TrainingDataset(PaintedSource(), 128, augment=True, hyp=hyp, mask_ratio=RATIO, seed=1)
    checked = pasted = 0
    for i in range(len(dataset)):
        item = dataset[i]
        _check_boxes_match_masks(item, RATIO)
        checked += _check_masks_cover_one_colour(item["image"].permute(1, 2, 0).numpy(), item["masks"].numpy())
        pasted += len(item["boxes"]) - len(dataset.frame(i)[1])
    assert checked >= 2 * len(dataset)
    assert pasted > 0  # more instances than the receiving images had


def test_copy_paste_is_deterministic_per_seed_epoch_and_index_and_leaves_other_items_alone() -> None:
    def items(copy_paste: float, seed: int = 0, epoch: int = 0) -> list[dict]:
        dataset = TrainingDataset(PaintedSource(), 128, augment=True, hyp=AugmentConfig(copy_paste=copy_paste),
                                  seed=seed)
        dataset.set_epoch(epoch)
        return [dataset[i] for i in range(len(dataset))]

    def same(a: dict, b: dict) -> bool:
        return all(torch.equal(a[k], b[k]) for k in a)

    half = items(0.5)
    assert all(same(a, b) for a, b in zip(half, items(0.5)))
    assert not all(same(a, b) for a, b in zip(half, items(0.5, epoch=1)))
    assert not all(same(a, b) for a, b in zip(half, items(0.5, seed=1)))
    without = items(0.0)
    unchanged = [same(a, b) for a, b in zip(half, without)]
    assert any(unchanged) and not all(unchanged)


def test_copy_paste_probability_is_validated() -> None:
    with pytest.raises(InvalidInputError):
        AugmentConfig(copy_paste=1.5)
