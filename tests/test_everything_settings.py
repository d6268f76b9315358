"""The first-click oracle of benchmarks/everything_settings.py on masks whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.everything_settings import best_masks_at_click


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((20, 20), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_the_best_mask_under_the_click_and_the_best_of_all_are_told_apart() -> None:
    truth = _box(5, 15, 5, 15)  # 100 pixels
    region = _box(0, 20, 0, 20)  # holds the click; IoU 0.25
    half = _box(5, 15, 5, 10)  # does not hold (12, 10); IoU 0.5
    holding, best, count = best_masks_at_click([region, half], (12, 10), truth)
    assert (holding, best, count) == (pytest.approx(0.25), pytest.approx(0.5), 1)


def test_ignored_pixels_leave_the_iou_and_no_mask_gives_zero() -> None:
    truth = _box(5, 15, 5, 15)
    ignore = _box(0, 20, 15, 20)  # the five columns right of the object
    wider = _box(5, 15, 5, 20)
    assert best_masks_at_click([wider], (7, 7), truth, ignore) == (pytest.approx(1.0), pytest.approx(1.0), 1)
    assert best_masks_at_click([], (7, 7), truth) == (0.0, 0.0, 0)
