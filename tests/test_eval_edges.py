"""The BSDS500 boundary benchmark (fastsam.eval.bsds), the edge maps and `run_edges_benchmark`, on hand-made
cases with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam.errors import InvalidInputError
from fastsam.eval.bsds import (BoundaryCounts, average_precision, best_f, correspond_pixels, evaluate_boundaries,
                               load_ground_truth, recall_at_half_precision, summarize, thin, threshold_grid)
from fastsam.eval.edge_maps import canny_edge_map, edge_nms, fastsam_edge_map
from fastsam.eval.edges import EDGE_METHODS, run_edges_benchmark
from fastsam.result import SegmentationResult
from fastsam.rle import RunLengthMask
from tests.paths import DATA

SIZE = 400  # tolerance 0.0075 x diagonal = 4.24 pixels


def vertical_line(column: int, size: int = SIZE, rows: tuple[int, int] = (50, 350)) -> np.ndarray:
    image = np.zeros((size, size), bool)
    image[rows[0]:rows[1], column] = True
    return image


def metrics(edge_maps: list[np.ndarray], truths: list[list[np.ndarray]], thresholds: int = 9) -> dict:
    return summarize([evaluate_boundaries(e.astype(np.float64), t, thresholds=thresholds)
                      for e, t in zip(edge_maps, truths)])


# ------------------------------------------------------------------------------------------------- protocol
def test_threshold_grid_is_the_benchmarks() -> None:
    grid = threshold_grid(99)
    assert grid.size == 99 and grid[0] == pytest.approx(0.01) and grid[-1] == pytest.approx(0.99)
    assert np.allclose(np.diff(grid), 0.01)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InvalidInputError):
            threshold_grid(bad)


def test_correspondence_within_tolerance_only() -> None:
    truth = vertical_line(100)
    for shift, expected in ((0, 300), (3, 300), (4, 300), (5, 0), (8, 0)):
        matched_pred, matched_truth = correspond_pixels(vertical_line(100 + shift), truth)
        assert matched_pred.sum() == matched_truth.sum() == expected, shift
    # A diagonal shift of (3, 3) is 4.24 px: just within; (3, 4) is 5 px: outside.
    point = np.zeros((SIZE, SIZE), bool)
    point[200, 200] = True
    for dy, dx, expected in ((3, 3, 1), (3, 4, 0)):
        other = np.zeros_like(point)
        other[200 + dy, 200 + dx] = True
        assert correspond_pixels(other, point)[0].sum() == expected


def test_correspondence_is_one_to_one_and_maximum() -> None:
    truth = np.zeros((SIZE, SIZE), bool)
    truth[200, 200] = True
    pred = np.zeros_like(truth)
    pred[200, 199:202] = True  # three candidates for one pixel: one match
    matched_pred, matched_truth = correspond_pixels(pred, truth)
    assert matched_pred.sum() == 1 and matched_truth.sum() == 1 and matched_pred[200, 200]
    # Nearest-first greedy pairs (x=201 -> 200) and leaves x=197 alone; the maximum matching re-routes:
    # 197 -> 200 and 201 -> 204 (3 px), both within 4.24 px.
    truth = np.zeros((SIZE, SIZE), bool)
    truth[200, [200, 204]] = True
    pred = np.zeros_like(truth)
    pred[200, [197, 201]] = True
    matched_pred, matched_truth = correspond_pixels(pred, truth)
    assert matched_pred.sum() == 2 and matched_truth.sum() == 2


def test_correspondence_matches_scipy_maximum_matching_on_random_maps() -> None:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = rng.integers(5, 40, 2)
        pred, truth = rng.random((h, w)) < 0.2, rng.random((h, w)) < 0.2
        max_dist = float(rng.uniform(0.02, 0.12))
        radius = max_dist * np.hypot(h, w)
        py, px = np.nonzero(pred)
        ty, tx = np.nonzero(truth)
        close = (py[:, None] - ty[None]) ** 2 + (px[:, None] - tx[None]) ** 2 <= radius ** 2 + 1e-9
        expected = 0
        if close.any():
            pairs = maximum_bipartite_matching(csr_matrix(close.astype(np.int8)), perm_type="column")
            expected = int((pairs >= 0).sum())
        matched_pred, matched_truth = correspond_pixels(pred, truth, max_dist)
        assert matched_pred.sum() == matched_truth.sum() == expected
        assert not (matched_pred & ~pred).any() and not (matched_truth & ~truth).any()


def test_thinning_gives_one_pixel_lines() -> None:
    block = np.zeros((40, 60), bool)
    block[10:25, 5:55] = True
    thinned = thin(block)
    assert thinned.any() and not (thinned & ~block).any()
    columns = thinned[:, 15:45]
    assert (columns.sum(axis=0) == 1).all()  # one pixel per column along the middle of a long bar
    line = np.zeros((30, 30), bool)
    line[15, 3:27] = True
    line[np.arange(5, 20), np.arange(5, 20)] = True
    assert np.array_equal(thin(line), thin(thin(line)))
    two_wide = np.zeros((30, 30), bool)
    two_wide[10:12, 3:27] = True
    assert thin(two_wide).sum() <= 24 and (thin(two_wide)[:, 5:25].sum(axis=0) == 1).all()


def test_perfect_empty_and_shifted_predictions() -> None:
    truth = vertical_line(100) | vertical_line(300)
    perfect = metrics([truth], [[truth]])
    assert perfect["ODS"]["F"] == pytest.approx(1.0) and perfect["OIS"]["F"] == pytest.approx(1.0)
    assert perfect["R50"] == pytest.approx(1.0)
    empty = metrics([np.zeros_like(truth)], [[truth]])
    assert empty["ODS"]["F"] == 0 and empty["OIS"]["F"] == 0 and empty["AP"] == 0 and empty["R50"] == 0
    shifted = metrics([np.roll(truth, 3, axis=1)], [[truth]])
    assert shifted["ODS"]["F"] == pytest.approx(1.0)
    too_far = metrics([np.roll(truth, 6, axis=1)], [[truth]])
    assert too_far["ODS"]["F"] == 0


def test_graded_perfect_map_has_ap_one() -> None:
    # The true boundary's pixels carry strengths spread over (0, 1]: recall climbs from ~0 to 1 at precision 1.
    truth = vertical_line(200, rows=(0, SIZE))
    graded = np.zeros((SIZE, SIZE))
    graded[:, 200] = (np.arange(SIZE) + 1) / SIZE
    result = metrics([graded], [[truth]], thresholds=99)
    # Recall runs from 5/400 (t = 0.99) to 397/400 (t = 0.01): 98 of the 101 recall samples, each 0.01.
    assert result["AP"] == pytest.approx(0.98)
    assert result["ODS"]["F"] == pytest.approx(2 * 0.9925 / 1.9925)  # precision 1 at recall 397/400


def test_several_annotators_and_false_positives() -> None:
    line_a, line_b, line_c = vertical_line(100), vertical_line(200), vertical_line(300)
    # Annotators draw A and B; the prediction has A: recall 1/2, precision 1.
    result = metrics([line_a], [[line_a, line_b]])
    assert result["ODS"]["recall"] == pytest.approx(0.5) and result["ODS"]["precision"] == pytest.approx(1.0)
    # A pixel matched by any annotator counts for precision: A + B against annotators A and B is perfect.
    result = metrics([line_a | line_b], [[line_a, line_b]])
    assert result["ODS"]["precision"] == pytest.approx(1.0) and result["ODS"]["recall"] == pytest.approx(1.0)
    # Recall pools every annotator's pixels: A against annotators {A} and {A, B} finds 600 of 900.
    result = metrics([line_a], [[line_a, line_a | line_b]])
    assert result["ODS"]["recall"] == pytest.approx(2 / 3) and result["ODS"]["precision"] == pytest.approx(1.0)
    # A true line and an equally long false one: P 1/2, R 1, F 2/3.
    result = metrics([line_a | line_c], [[line_a]])
    assert result["ODS"]["F"] == pytest.approx(2 / 3)


def test_ods_takes_one_threshold_and_ois_each_images_own() -> None:
    line_a, line_c = vertical_line(100), vertical_line(300)
    first = 0.8 * line_a + 0.5 * line_c  # best above 0.5
    second = 0.3 * line_a + 0.15 * line_c  # best in (0.15, 0.3]
    result = metrics([first, second], [[line_a], [line_a]], thresholds=19)
    assert result["OIS"]["F"] == pytest.approx(1.0)
    # One threshold in (0.15, 0.3]: all of A in both, C in the first: R 1, P 2/3, F 0.8.
    assert result["ODS"]["F"] == pytest.approx(0.8)
    assert 0.15 < result["ODS"]["threshold"] <= 0.3


def test_summary_formulas_on_known_curves() -> None:
    # F interpolated between (R 1, P 0) and (R 0, P 1) peaks at 0.5 halfway, where neither end has any F.
    _, r, p, f = best_f(np.array([0.25, 0.75]), np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert f == pytest.approx(0.5, abs=1e-3) and r == pytest.approx(0.5, abs=0.01)
    recall = np.linspace(1, 0, 101)
    assert average_precision(recall, 1 - recall) == pytest.approx(0.505)  # the benchmark's 101 x 0.01 sum
    assert average_precision(np.array([0.6, 0.6]), np.array([0.9, 0.8])) == 0  # one recall: no curve
    assert recall_at_half_precision(np.array([0.9, 0.7, 0.5]), np.array([0.4, 0.6, 0.8])) == pytest.approx(0.8)
    assert recall_at_half_precision(np.array([0.9, 0.7]), np.array([0.2, 0.3])) == 0
    assert recall_at_half_precision(np.array([0.9, 0.7]), np.array([0.6, 0.7])) == pytest.approx(0.9)


def test_counts_round_trip_and_input_checks() -> None:
    truth = vertical_line(100)
    counts = evaluate_boundaries(truth.astype(float), [truth], thresholds=5)
    assert np.array_equal(BoundaryCounts.from_json(json.loads(json.dumps(counts.to_json()))).cnt_r, counts.cnt_r)
    with pytest.raises(InvalidInputError):
        evaluate_boundaries(truth * 2.0, [truth])
    with pytest.raises(InvalidInputError):
        evaluate_boundaries(truth.astype(float), [truth[:-1]])
    with pytest.raises(InvalidInputError):
        evaluate_boundaries(truth.astype(float), [])
    with pytest.raises(InvalidInputError):
        correspond_pixels(truth, truth, max_dist=-0.1)
    with pytest.raises(InvalidInputError):
        summarize([])


# ------------------------------------------------------------------------------------------------ edge maps
def square_result(height: int = 120, width: int = 160, box: tuple[int, int, int, int] = (40, 30, 100, 90),
                  score: float = 0.9) -> SegmentationResult:
    mask = np.zeros((height, width), bool)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = True
    return SegmentationResult(image_size=(height, width), boxes=np.array([box], np.float32),
                              scores=np.array([score], np.float32), rles=[RunLengthMask.from_mask(mask)])


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return mask & ~inner.astype(bool)


def test_nms_keeps_the_ridge_of_a_step() -> None:
    step = np.zeros((20, 30), np.float32)
    step[:, 15:] = 1
    soft = cv2.GaussianBlur(step, (0, 0), 1.5)
    gy = cv2.Sobel(soft, cv2.CV_32F, 0, 1)
    gx = cv2.Sobel(soft, cv2.CV_32F, 1, 0)
    kept = edge_nms(np.hypot(gy, gx), gy, gx)
    columns = np.flatnonzero(kept[10] > 0)
    assert set(columns) <= {14, 15} and columns.size >= 1


def test_fastsam_edge_map_traces_the_masks() -> None:
    result = square_result()
    edges = fastsam_edge_map(result)
    assert edges.shape == (120, 160) and edges.dtype == np.float32
    assert edges.max() == pytest.approx(0.9, abs=0.05) and edges.min() >= 0
    mask = result.mask(0)
    near = cv2.dilate(mask_boundary(mask).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert not edges[~near].any()
    scored = metrics([edges.astype(np.float64)], [[mask_boundary(mask)]], thresholds=9)
    assert scored["ODS"]["F"] > 0.95
    empty = SegmentationResult(image_size=(50, 60), boxes=np.zeros((0, 4), np.float32),
                               scores=np.zeros(0, np.float32), rles=[])
    assert not fastsam_edge_map(empty).any()
    with pytest.raises(InvalidInputError):
        fastsam_edge_map(result, sigma=0)


def test_fastsam_edges_ignore_the_image_border() -> None:
    edges = fastsam_edge_map(square_result(box=(0, 0, 80, 120)))  # left half of the image, full height
    assert not edges[:, :3].any() and not edges[:3, :70].any() and not edges[-3:, :70].any()
    assert edges[:, 78:82].any()


def test_canny_edge_map_levels_are_nested_thresholds() -> None:
    image = np.full((100, 120, 3), 40, np.uint8)
    image[30:70, 40:90] = 200
    image[45:55, 10:30] = 60  # a faint edge: only low thresholds keep it
    edges = canny_edge_map(image, sigma=1.5)
    assert 0 <= edges.min() and edges.max() < 1
    square = np.zeros((100, 120), bool)
    square[30:70, 40:90] = True
    near = cv2.dilate(mask_boundary(square).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert edges[near].max() > edges[45:55, 5:35].max() > 0
    assert (edges[near & (edges > 0)] > 0.5).mean() > 0.9
    with pytest.raises(InvalidInputError):
        canny_edge_map(image.astype(np.float32))


# ------------------------------------------------------------------------------------------------ benchmark
def write_fake_bsds(root: Path, count: int = 2, size: tuple[int, int] = (160, 240)) -> None:
    """BSDS500-shaped folder: images with a bright rectangle, two annotators drawing its outline."""
    from scipy.io import savemat

    (root / "images" / "val").mkdir(parents=True)
    (root / "groundTruth" / "val").mkdir(parents=True)
    for k in range(count):
        image = np.full((*size, 3), 30, np.uint8)
        image[30 + k:120, 40:190 + k] = 220
        cv2.imwrite(str(root / "images" / "val" / f"{k:03d}.png"), image)
        region = image[..., 0] > 100
        boundary = mask_boundary(region).astype(np.uint8)
        cells = np.empty((1, 2), dtype=object)
        for a in range(2):
            cells[0, a] = {"Segmentation": region.astype(np.uint16) + 1, "Boundaries": boundary}
        savemat(root / "groundTruth" / "val" / f"{k:03d}.mat", {"groundTruth": cells})


def test_run_edges_benchmark_writes_results_and_resumes(tmp_path: Path) -> None:
    write_fake_bsds(tmp_path / "bsds", count=3)
    out = tmp_path / "out"
    document = run_edges_benchmark("canny", tmp_path / "bsds", out, thresholds=19, progress=False)
    assert EDGE_METHODS == ("fastsam", "canny")
    assert document["dataset"]["images"] == 3 and len(document["per_image"]) == 3
    assert document["metrics"]["ODS"]["F"] > 0.8  # clean step edges
    assert json.loads((out / "edges.json").read_text())["metrics"] == document["metrics"]
    assert "| canny |" in (out / "edges.md").read_text()
    assert document["timing"]["images_computed"] == 3
    again = run_edges_benchmark("canny", tmp_path / "bsds", out, thresholds=19, progress=False)
    assert again["timing"]["images_computed"] == 0 and again["metrics"] == document["metrics"]
    (out / "edges_parts" / "001.json").unlink()
    resumed = run_edges_benchmark("canny", tmp_path / "bsds", out, thresholds=19, workers=2, progress=False)
    assert resumed["timing"]["images_computed"] == 1 and resumed["metrics"] == document["metrics"]
    with pytest.raises(InvalidInputError, match="other settings"):
        run_edges_benchmark("canny", tmp_path / "bsds", out, thresholds=9, progress=False)


def test_run_edges_benchmark_rejects_bad_input(tmp_path: Path) -> None:
    write_fake_bsds(tmp_path / "bsds", count=1)
    with pytest.raises(InvalidInputError, match="unknown edge method"):
        run_edges_benchmark("sobel", tmp_path / "bsds", tmp_path / "out")
    with pytest.raises(InvalidInputError, match="needs a model"):
        run_edges_benchmark("fastsam", tmp_path / "bsds", tmp_path / "out")
    with pytest.raises(InvalidInputError, match="not a BSDS500 folder"):
        run_edges_benchmark("canny", tmp_path, tmp_path / "out")
    for bad in ({"max_images": 0}, {"workers": 0}, {"thresholds": 0}):
        with pytest.raises(InvalidInputError):
            run_edges_benchmark("canny", tmp_path / "bsds", tmp_path / "out", progress=False, **bad)
    (tmp_path / "broken.mat").write_bytes(b"not a mat file")
    with pytest.raises(InvalidInputError):
        load_ground_truth(tmp_path / "broken.mat")


def test_run_edges_benchmark_with_a_model(tmp_path: Path, tiny_model: Path) -> None:
    write_fake_bsds(tmp_path / "bsds", count=2)
    document = run_edges_benchmark("fastsam", tmp_path / "bsds", tmp_path / "out", model=tiny_model, imgsz=96,
                                   conf=0.0, thresholds=9, progress=False)
    assert document["settings"]["edge_map"]["model"] == str(tiny_model)
    assert all(image["instances"] > 0 for image in document["per_image"])
    for key in ("ODS", "OIS"):
        assert 0 <= document["metrics"][key]["F"] <= 1
    assert 0 <= document["metrics"]["AP"] <= 1


@pytest.mark.skipif(not (DATA / "bsds500" / "groundTruth" / "val").is_dir(), reason="BSDS500 not in ../shared/data")
def test_canny_on_two_bsds500_images(tmp_path: Path) -> None:
    document = run_edges_benchmark("canny", DATA / "bsds500", tmp_path, max_images=2, thresholds=33, progress=False)
    assert document["dataset"]["images"] == 2
    assert 0.35 < document["metrics"]["ODS"]["F"] < 0.8
    assert document["metrics"]["OIS"]["F"] >= document["metrics"]["ODS"]["F"] - 1e-9
