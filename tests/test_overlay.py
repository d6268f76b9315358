"""Overlay drawing: mask colours, stacking order, prompts, contours and validation, on hand-made masks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam.errors import InvalidInputError
from fastsam.io.overlay import draw_overlay, point_radius, save_overlay
from fastsam.prompts.selection import Selection
from fastsam.result import SegmentationResult
from fastsam.rle import RunLengthMask

H, W = 60, 80
GREY = 100


def _rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def _image() -> np.ndarray:
    return np.full((H, W, 3), GREY, np.uint8)


def _selection(*masks: np.ndarray) -> Selection:
    selection = Selection((H, W))
    for k, mask in enumerate(masks):
        selection.add(RunLengthMask.from_mask(mask), k, "everything", 1.0)
    return selection


def test_mask_pixels_change_and_others_stay() -> None:
    image = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    mask = _rect(10, 5, 30, 25)
    out = draw_overlay(image, _selection(mask), color=(255, 0, 0))
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[~mask], image[~mask])
    expected = np.round(image[mask].astype(np.float64) * 0.4 + np.array([255, 0, 0]) * 0.6)
    np.testing.assert_allclose(out[mask].astype(np.float64), expected, atol=1)
    assert image[0, 0].tolist() == out[0, 0].tolist()
    assert (out[mask] != image[mask]).any(axis=1).mean() > 0.9


def test_random_colours_are_seeded() -> None:
    selection = _selection(_rect(0, 0, 20, 20), _rect(40, 30, 70, 50))
    first = draw_overlay(_image(), selection, seed=3)
    assert np.array_equal(first, draw_overlay(_image(), selection, seed=3))
    assert not np.array_equal(first, draw_overlay(_image(), selection, seed=4))
    assert not np.array_equal(first[10, 10], first[40, 50])  # different masks, different colours


def test_smaller_mask_is_on_top_in_overlap() -> None:
    big, small = _rect(5, 5, 60, 50), _rect(20, 20, 40, 35)
    overlap, big_only = (25, 30), (8, 8)  # (y, x)
    for masks in [(big, small), (small, big)]:
        out = draw_overlay(_image(), _selection(*masks), seed=0)
        # Mask k gets colour k of the seeded generator, whatever the drawing order.
        colours = np.random.default_rng(0).integers(0, 256, (2, 3), dtype=np.uint8).astype(np.float64)
        k_small = 0 if masks[0] is small else 1
        # The overlap shows the small mask's colour over the image once (not blended over the big one).
        np.testing.assert_allclose(out[overlap].astype(float), GREY * 0.4 + colours[k_small] * 0.6, atol=1)
        np.testing.assert_allclose(out[big_only].astype(float), GREY * 0.4 + colours[1 - k_small] * 0.6, atol=1)


def test_segmentation_result_and_list_inputs_match_selection() -> None:
    masks = [_rect(5, 5, 30, 30), _rect(10, 10, 20, 20)]
    rles = [RunLengthMask.from_mask(m) for m in masks]
    result = SegmentationResult((H, W), np.array([r.bbox() for r in rles], np.float32),
                                np.array([0.9, 0.8], np.float32), rles, image=_image())
    expected = draw_overlay(_image(), _selection(*masks), seed=5)
    np.testing.assert_array_equal(draw_overlay(_image(), result, seed=5), expected)
    np.testing.assert_array_equal(draw_overlay(None, result, seed=5), expected)  # the result's own image
    np.testing.assert_array_equal(draw_overlay(_image(), rles, seed=5), expected)


def test_points_and_boxes_are_drawn_where_expected() -> None:
    out = draw_overlay(_image(), _selection(), points=[[20, 15], [60, 40]], labels=[1, 0],
                       boxes=[[5, 5, 75, 55]])
    assert out[15, 20].tolist() == [255, 255, 0]  # foreground: yellow
    assert out[40, 60].tolist() == [255, 0, 255]  # background: magenta
    r = point_radius(H, W)
    assert out[15, 20 + r + 3].tolist() == [GREY] * 3  # just beyond the circle
    assert out[5, 40].tolist() == [0, 0, 255]  # top edge of the box
    assert out[30, 75].tolist() == [0, 0, 255]  # right edge
    assert out[30, 40].tolist() == [GREY] * 3  # inside the box, no mask
    assert out[0, 0].tolist() == [GREY] * 3
    # Labels default to foreground.
    assert draw_overlay(_image(), _selection(), points=[[50, 30]])[30, 50].tolist() == [255, 255, 0]


def test_contours_change_pixels_at_the_border_only() -> None:
    mask = _rect(20, 15, 50, 45)
    plain = draw_overlay(_image(), _selection(mask), color=(0, 200, 0))
    outlined = draw_overlay(_image(), _selection(mask), color=(0, 200, 0), contours=True)
    changed = (plain != outlined).any(axis=2)
    assert changed[15, 35] and changed[30, 20] and changed[44, 35] and changed[30, 49]  # on the border
    assert not changed[30, 35]  # deep inside
    assert not changed[5, 5]  # far outside
    ys, xs = np.nonzero(changed)
    assert ys.min() >= 13 and ys.max() <= 46 and xs.min() >= 18 and xs.max() <= 51
    assert outlined[15, 35][2] > outlined[15, 35][1]  # blue dominates on the outline


def test_clean_edges_removes_thin_parts() -> None:
    mask = _rect(10, 10, 40, 40)
    mask[5:50, 60] = True  # a one-pixel line: removed by the 8x8 opening
    raw = draw_overlay(_image(), _selection(mask), color=(255, 0, 0))
    clean = draw_overlay(_image(), _selection(mask), color=(255, 0, 0), clean_edges=True)
    assert raw[20, 60].tolist() != [GREY] * 3
    assert clean[20, 60].tolist() == [GREY] * 3
    assert clean[25, 25].tolist() == raw[25, 25].tolist()


def test_shape_mismatch_and_bad_arguments_raise() -> None:
    selection = _selection(_rect(0, 0, 5, 5))
    with pytest.raises(InvalidInputError):
        draw_overlay(np.zeros((H + 1, W, 3), np.uint8), selection)
    with pytest.raises(InvalidInputError):
        draw_overlay(np.zeros((H, W), np.uint8), selection)
    with pytest.raises(InvalidInputError):
        draw_overlay(np.zeros((H, W, 3), np.float32), selection)
    with pytest.raises(InvalidInputError):
        draw_overlay(np.zeros((H, W + 1, 3), np.uint8), [RunLengthMask.from_mask(_rect(0, 0, 5, 5))])
    with pytest.raises(InvalidInputError):
        draw_overlay(None, selection)
    with pytest.raises(InvalidInputError):
        draw_overlay(_image(), "masks")
    with pytest.raises(InvalidInputError):
        draw_overlay(_image(), selection, color=(300, 0, 0))
    with pytest.raises(InvalidInputError):
        draw_overlay(_image(), selection, alpha=1.5)
    with pytest.raises(InvalidInputError):
        draw_overlay(_image(), selection, points=[[W + 5, 0]])
    with pytest.raises(InvalidInputError):
        draw_overlay(_image(), selection, points=[[1, 1]], labels=[2])
    with pytest.raises(InvalidInputError):
        draw_overlay(_image(), selection, boxes=[[10, 10, 5, 5]])


def test_save_overlay_writes_rgb_as_png_and_jpeg(tmp_path: Path) -> None:
    mask = _rect(10, 10, 30, 30)
    path = save_overlay(tmp_path / "deep" / "o.png", _image(), _selection(mask), color=(255, 0, 0))
    read = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(read, draw_overlay(_image(), _selection(mask), color=(255, 0, 0)))
    assert read[20, 20][0] > read[20, 20][2]  # red stays red: channels were swapped for OpenCV
    jpeg = save_overlay(tmp_path / "o.jpg", _image(), _selection(mask))
    assert cv2.imread(str(jpeg)).shape == (H, W, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "o.jpg"]
    with pytest.raises(InvalidInputError):
        save_overlay(tmp_path / "o.gif", _image(), _selection(mask))
    with pytest.raises(InvalidInputError):
        save_overlay(tmp_path / "x.png", None, _selection(mask))
