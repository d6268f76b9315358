"""Simulated clicks: click placement, IoU with an ignore label, NoC, on hand-made masks with known answers; the
interactive-set layouts (GrabCut, Berkeley, DAVIS / COCO_MVal, SBD) on small synthetic folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fastsam.errors import InvalidInputError
from fastsam.eval.clicks import (masked_iou, next_click, number_of_clicks, run_clicks_benchmark, simulate_clicks,
                                 summarize_clicks)
from fastsam.eval.datasets import load_interactive_set, read_interactive_mask


def square(size: int, x0: int, y0: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y0:y0 + side, x0:x0 + side] = True
    return mask


def test_first_click_is_the_object_centre_and_positive() -> None:
    truth = square(30, 5, 8, 11)  # pixels 5..15 x 8..18: centre (10, 13)
    assert next_click(truth, np.zeros_like(truth)) == (10, 13, True)


def test_the_image_border_counts_as_boundary() -> None:
    truth = np.zeros((20, 20), bool)
    truth[:5, :] = True  # a strip along the top: were the border not boundary, row 0 would be the deepest
    x, y, positive = next_click(truth, np.zeros_like(truth))
    assert positive and y == 2 and 2 <= x <= 17


def test_a_deeper_false_positive_gives_a_negative_click() -> None:
    truth = square(40, 2, 2, 6)
    prediction = truth | square(40, 20, 20, 15)  # object found, plus a large wrong region
    prediction[4, 4] = False  # one missed pixel: depth 1, far shallower than the wrong square's 8
    assert next_click(truth, prediction) == (27, 27, False)
    assert next_click(truth, truth) is None


def test_ignore_pixels_are_neither_errors_nor_counted_in_iou() -> None:
    truth = square(20, 5, 5, 10)
    ignore = square(20, 4, 4, 12) & ~square(20, 6, 6, 8)  # a 2-pixel band on the object's boundary
    prediction = square(20, 6, 6, 8)  # misses only the band's inner ring, which is ignored
    assert masked_iou(prediction, truth, ignore) == pytest.approx(1.0)
    assert masked_iou(prediction, truth) == pytest.approx(64 / 100)
    assert next_click(truth, prediction, ignore) is None
    assert masked_iou(np.zeros_like(truth), np.zeros_like(truth)) == 1.0
    assert masked_iou(np.zeros_like(truth), truth) == 0.0


def test_number_of_clicks_and_summary() -> None:
    assert number_of_clicks([0.5, 0.86, 0.95], 0.85) == 2
    assert number_of_clicks([0.5, 0.86, 0.95], 0.90) == 3
    assert number_of_clicks([0.5, 0.6], 0.90) == 2  # never reached: the maximum
    summary = summarize_clicks([[0.5, 0.9], [1.0, 1.0]])
    assert summary["miou"] == pytest.approx([0.75, 0.95])
    assert summary["NoC@85"] == pytest.approx(1.5) and summary["NoC@90"] == pytest.approx(1.5)
    assert summary["failures@90"] == 0 and summarize_clicks([[0.5, 0.6]])["failures@85"] == 1
    empty = summarize_clicks([])  # no images: no curve and no NoC, not a numpy reshape error
    assert empty["miou"] == [] and empty["NoC@85"] is None and empty["failures@85"] == 0


def test_simulation_corrects_errors_click_by_click() -> None:
    truth = square(40, 5, 5, 12) | square(40, 25, 25, 10)  # two parts: one click cannot find both

    def predict(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        # A perfect "instance" picker: each positive click selects the part it falls in.
        mask = np.zeros_like(truth)
        for (x, y), label in zip(points.astype(int), labels):
            part = square(40, 5, 5, 12) if x < 20 else square(40, 25, 25, 10)
            mask = mask | part if label == 1 else mask & ~part
        return mask

    ious, clicks = simulate_clicks(predict, truth, max_clicks=4)
    assert clicks == [[10, 10, 1], [29, 29, 1]]  # the bigger part first, then the other; then nothing is wrong
    assert ious == pytest.approx([144 / 244, 1.0, 1.0, 1.0])
    with pytest.raises(InvalidInputError, match="max_clicks"):
        simulate_clicks(predict, truth, max_clicks=0)
    with pytest.raises(InvalidInputError, match="boolean"):
        simulate_clicks(predict, truth.astype(np.uint8))


def write_grabcut_set(root: Path) -> Path:
    """Two 64x48 images with a rectangle object each and a 128 ignore band, GrabCut's layout."""
    (root / "data_GT").mkdir(parents=True)
    (root / "boundary_GT").mkdir()
    for name, (x, y) in {"a": (10, 10), "b": (30, 15)}.items():
        labels = np.zeros((48, 64), np.uint8)
        cv2.rectangle(labels, (x - 1, y - 1), (x + 20, y + 20), 128, -1)
        labels[y:y + 20, x:x + 20] = 255
        image = np.full((48, 64, 3), 60, np.uint8)
        image[labels == 255] = 200
        cv2.imwrite(str(root / "data_GT" / f"{name}.jpg"), image)
        cv2.imwrite(str(root / "boundary_GT" / f"{name}.bmp"), labels)
    return root


def test_benchmark_runs_and_resumes_with_a_real_model(tmp_path: Path, tiny_model: Path) -> None:
    root = write_grabcut_set(tmp_path / "grabcut")
    out = tmp_path / "out"
    summary = run_clicks_benchmark(root, out, model=tiny_model, imgsz=64, conf=0.0, max_det=30, max_clicks=3,
                                   progress=False)
    assert summary["images"] == 2 and len(summary["miou"]) == 3
    assert all(0.0 <= v <= 1.0 for v in summary["miou"]) and 1 <= summary["NoC@90"] <= 3
    assert (out / "clicks.md").is_file() and (out / "cache-clicks" / "a.json").is_file()
    again = run_clicks_benchmark(root, out, model=tiny_model, imgsz=64, conf=0.0, max_det=30, max_clicks=3,
                                 progress=False)
    assert again["computed_images"] == 0 and again["miou"] == summary["miou"]
    with pytest.raises(InvalidInputError, match="known layout"):
        run_clicks_benchmark(tmp_path, out, model=tiny_model)


# ---------------------------------------------------------------------------------------------- set layouts
def _object_and_void(height: int = 30, width: int = 40) -> tuple[np.ndarray, np.ndarray]:
    obj = np.zeros((height, width), bool)
    obj[8:20, 10:25] = True
    void = np.zeros_like(obj)
    void[7:21, 9:26] = True
    return obj, void & ~obj


def _write_pair(root: Path, image_dir: str, mask_dir: str, name: str, mask: Image.Image) -> None:
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    (root / mask_dir).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*mask.size[::-1], 3), 90, np.uint8)).save(root / image_dir / f"{name}.jpg")
    mask.save(root / mask_dir / f"{name}.png")


def test_berkeley_layout_with_gray_void_band(tmp_path: Path) -> None:
    obj, void = _object_and_void()
    _write_pair(tmp_path, "images", "masks", "b1", Image.fromarray((obj * 255 + void * 128).astype(np.uint8)))
    [sample] = load_interactive_set(tmp_path)
    found, ignored = read_interactive_mask(sample.mask, sample.instance)
    assert sample.name == "b1" and np.array_equal(found, obj) and np.array_equal(ignored, void)


@pytest.mark.parametrize("encoding", ["gray-0-255", "rgb-0-255", "gray-0-1"])
def test_davis_and_coco_mval_layout_with_binary_masks(tmp_path: Path, encoding: str) -> None:
    obj, _ = _object_and_void()
    if encoding == "gray-0-255":
        mask = Image.fromarray(obj.astype(np.uint8) * 255)
    elif encoding == "rgb-0-255":  # colour masks count where any channel is set
        mask = Image.fromarray(np.stack([obj * 0, obj * 255, obj * 0], axis=2).astype(np.uint8))
    else:
        mask = Image.fromarray(obj.astype(np.uint8))
    _write_pair(tmp_path, "img", "gt", "bear", mask)
    [sample] = load_interactive_set(tmp_path)
    found, ignored = read_interactive_mask(sample.mask, sample.instance)
    assert np.array_equal(found, obj) and not ignored.any()


def _palette(labels: np.ndarray) -> Image.Image:
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192])
    return image


def test_sbd_layout_with_palette_masks_gives_one_sample_per_object(tmp_path: Path) -> None:
    obj, void = _object_and_void()
    second = np.zeros_like(obj)
    second[22:28, 2:8] = True
    labels = obj * 1 + second * 2 + void * 255
    _write_pair(tmp_path, "img", "masks", "2008_000001", _palette(labels))
    _write_pair(tmp_path, "img", "masks", "2008_000002", _palette(obj * 1 + void * 255))
    samples = load_interactive_set(tmp_path)
    assert [s.name for s in samples] == ["2008_000001#1", "2008_000001#2", "2008_000002"]
    for sample, expected in zip(samples, (obj, second, obj)):
        found, ignored = read_interactive_mask(sample.mask, sample.instance)
        assert np.array_equal(found, expected) and np.array_equal(ignored, void)  # 255 is void, not object
    assert len(load_interactive_set(tmp_path, max_images=2)) == 2


def test_unreadable_mask_and_unknown_layout_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"x")
    (tmp_path / "gt" / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(InvalidInputError, match="cannot read mask"):
        load_interactive_set(tmp_path)
    with pytest.raises(InvalidInputError, match="img/ \\+ gt/"):
        load_interactive_set(tmp_path / "img")


def test_benchmark_on_a_davis_layout(tmp_path: Path, tiny_model: Path) -> None:
    obj, _ = _object_and_void()
    _write_pair(tmp_path / "davis", "img", "gt", "bear", Image.fromarray(obj.astype(np.uint8) * 255))
    summary = run_clicks_benchmark(tmp_path / "davis", tmp_path / "out", model=tiny_model, imgsz=64, conf=0.0,
                                   max_det=10, max_clicks=2, progress=False)
    assert summary["images"] == 1 and len(summary["miou"]) == 2
