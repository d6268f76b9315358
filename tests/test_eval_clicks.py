"""Simulated clicks: click placement, IoU with an ignore label, NoC, on hand-made masks with known answers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam.errors import InvalidInputError
from fastsam.eval.clicks import (masked_iou, next_click, number_of_clicks, run_clicks_benchmark, simulate_clicks,
                                 summarize_clicks)


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
    with pytest.raises(InvalidInputError, match="GrabCut-format"):
        run_clicks_benchmark(tmp_path, out, model=tiny_model)
