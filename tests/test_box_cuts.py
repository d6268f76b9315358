"""The box-cut measure of benchmarks/box_cuts.py on masks whose answer is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from benchmarks.box_cuts import instance_cuts


def test_a_rectangle_inside_the_image_is_all_cut() -> None:
    mask = np.ones((20, 30), bool)  # a mask filling its box: every side is a straight cut
    boundary, on_sides, worst = instance_cuts(mask, (10, 10, 40, 30), (100, 100))
    assert boundary == 2 * 30 + 2 * 18
    assert on_sides == 2 * 28 + 2 * 18 and worst == 1.0


def test_sides_on_the_image_border_are_not_cuts() -> None:
    mask = np.ones((20, 30), bool)
    _, on_sides, worst = instance_cuts(mask, (0, 0, 30, 20), (20, 100))  # touches top, bottom and left
    assert on_sides == 18 and worst == 1.0  # only the right side, inside the image, is a cut


def test_a_disc_touches_its_box_only_at_its_extremes() -> None:
    mask = np.zeros((41, 41), np.uint8)
    cv2.circle(mask, (20, 20), 20, 1, -1)
    boundary, on_sides, worst = instance_cuts(mask.astype(bool), (30, 30, 71, 71), (200, 200))
    assert boundary > 100 and on_sides / boundary < 0.1 and worst < 0.25


def test_empty_sides_list_for_a_full_image_mask() -> None:
    assert instance_cuts(np.ones((5, 5), bool), (0, 0, 5, 5), (5, 5))[1:] == (0, 0.0)
