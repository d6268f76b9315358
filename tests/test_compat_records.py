"""SAM automatic-mask-generator records (SegmentationResult.to_sam_records), SAM's small-region clean-up, and
supervision's Detections (from_sam and to_supervision)."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fastsam.errors import InvalidInputError
from fastsam.inference.predictor import Predictor
from fastsam.model.checkpoint import load_weights
from fastsam.prompts.text import MissingDependencyError
from fastsam.result import SegmentationResult
from fastsam.rle import RunLengthMask
from fastsam.sam_records import remove_small_regions
from tests.paths import FIXTURES

DOGS = FIXTURES / "images" / "dogs.jpg"


@pytest.fixture(scope="module")
def result(tiny_model) -> SegmentationResult:
    """A result with prototypes kept: the n26 fixture on dogs.jpg when present, else the random tiny model on a
    synthetic image (always available)."""
    if (FIXTURES / "fastsam-n26-parity.pt").is_file():
        predictor = Predictor(load_weights(FIXTURES / "fastsam-n26-parity.pt"), imgsz=320, conf=0.2,
                              keep_prototypes=True)
        return predictor(DOGS)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    return Predictor(load_weights(tiny_model), imgsz=320, conf=0.0, max_det=40, keep_prototypes=True)(image)


def _sam_remove_small_regions(mask: np.ndarray, area: int, mode: str) -> np.ndarray:
    """SAM's own algorithm (segment_anything.utils.amg.remove_small_regions) on a full mask, written out here
    as the reference."""
    holes = mode == "holes"
    working = (holes ^ mask).astype(np.uint8)
    count, regions, stats, _ = cv2.connectedComponentsWithStats(working, 8)
    sizes = stats[:, -1][1:]
    small = [i + 1 for i, s in enumerate(sizes) if s < area]
    if not small:
        return mask
    fill = [0] + small
    if not holes:
        fill = [i for i in range(count) if i not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill)


def test_records_have_sams_fields(result):
    records = result.to_sam_records()
    assert len(records) == len(result) > 0
    h, w = result.image_size
    for n, record in enumerate(records):
        assert set(record) == {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score",
                               "crop_box"}
        mask = record["segmentation"]
        assert mask.dtype == bool and mask.shape == (h, w) and np.array_equal(mask, result.mask(n))
        assert record["area"] == int(mask.sum())
        ys, xs = np.nonzero(mask)
        # SAM's box: min corner and inclusive max corner, as XYWH (w = max - min).
        assert record["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        x, y = record["point_coords"][0]
        assert mask[int(y), int(x)]
        assert record["predicted_iou"] == pytest.approx(float(result.scores[n]))
        assert record["crop_box"] == [0, 0, w, h]
        assert 0.0 <= record["stability_score"] <= 1.0
    for n, record in enumerate(records[:3]):
        # Stability = |logit > 1| / |logit > -1|, and the mask (logit > 0) lies between the two; checked on the
        # probabilities the renderer computes directly (slow: a few instances).
        probabilities, _, _ = result.prototypes.probability_crop(n)
        high, low = int((probabilities > 0.7310586).sum()), int((probabilities > 0.2689414).sum())
        assert high <= record["area"] <= low
        assert record["stability_score"] == pytest.approx(high / low if low else 0.0, abs=1e-6)


def test_rle_output_modes(result):
    binary = result.to_sam_records()
    uncompressed = result.to_sam_records(output_mode="uncompressed_rle")
    compressed = result.to_sam_records(output_mode="coco_rle")
    h, w = result.image_size
    for b, u, c in zip(binary, uncompressed, compressed):
        assert u["segmentation"]["size"] == [h, w] and isinstance(u["segmentation"]["counts"], list)
        decoded = coco_mask.decode(coco_mask.frPyObjects(u["segmentation"], h, w)).astype(bool)
        assert np.array_equal(decoded, b["segmentation"])
        assert isinstance(c["segmentation"]["counts"], str)
        assert np.array_equal(RunLengthMask.from_coco(c["segmentation"]).decode(), b["segmentation"])
    with pytest.raises(InvalidInputError, match="output_mode"):
        result.to_sam_records(output_mode="png")


def test_stability_is_none_without_prototypes(result):
    bare = SegmentationResult(result.image_size, result.boxes, result.scores, result.rles)
    assert [r["stability_score"] for r in bare.to_sam_records(output_mode="coco_rle")] == [None] * len(result)


def _scene() -> np.ndarray:
    mask = np.zeros((60, 80), bool)
    mask[10:50, 10:60] = True
    mask[20:23, 20:23] = False          # a 9-pixel hole
    mask[30:45, 30:45] = False          # a 225-pixel hole
    mask[2:4, 70:72] = True             # a 4-pixel island
    mask[55:60, 0:20] = True            # a 100-pixel island touching the image border
    mask[0:3, 0:3] = True               # a 9-pixel island in the corner
    return mask


@pytest.mark.parametrize("margin", [0, 5])
@pytest.mark.parametrize("area", [1, 5, 10, 101, 226, 5000])
def test_small_region_clean_up_matches_sams_algorithm(area, margin):
    # margin 0: the mask touches the image border (decoded alone); 5: it does not (worked on its box).
    mask = np.pad(_scene(), margin)
    expected = _sam_remove_small_regions(_sam_remove_small_regions(mask, area, "holes"), area, "islands")
    cleaned = remove_small_regions(RunLengthMask.from_mask(mask), area)
    assert np.array_equal(cleaned.decode(), expected)


def test_min_region_and_min_area_knobs(result):
    n = int(np.argmax(result.areas))
    cleaned = result.to_sam_records(min_mask_region_area=50)
    assert len(cleaned) == len(result)
    for record, rle in zip(cleaned, result.rles):
        expected = remove_small_regions(rle, 50).decode()
        assert np.array_equal(record["segmentation"], expected) and record["area"] == int(expected.sum())
    biggest = result.to_sam_records(min_area=int(result.areas[n]))
    assert [r["area"] for r in biggest] == [int(a) for a in result.areas if a >= result.areas[n]]
    for bad in (-1, float("nan"), "10", True):
        with pytest.raises(InvalidInputError):
            result.to_sam_records(min_mask_region_area=bad)
        with pytest.raises(InvalidInputError):
            result.to_sam_records(min_area=bad)


def test_supervision_from_sam_takes_the_records(result):
    sv = pytest.importorskip("supervision")
    records = result.to_sam_records()
    detections = sv.Detections.from_sam(records)
    order = np.argsort(-result.areas, kind="stable")  # from_sam sorts by area, largest first
    assert len(detections) == len(result)
    assert np.array_equal(detections.mask.sum((1, 2)), result.areas[order])
    np.testing.assert_array_equal(detections.xyxy, sv.mask_to_xyxy(detections.mask))
    # The compressed records give the same detections.
    compact = sv.Detections.from_sam(result.to_sam_records(output_mode="coco_rle"))
    assert np.array_equal(compact.mask, detections.mask)


def test_to_supervision(result, monkeypatch):
    sv = pytest.importorskip("supervision")
    detections = result.to_supervision()
    assert isinstance(detections, sv.Detections) and len(detections) == len(result)
    np.testing.assert_allclose(detections.confidence, result.scores)
    np.testing.assert_allclose(detections.xyxy, result.boxes)
    assert np.array_equal(detections.mask, result.masks) and (detections.class_id == 0).all()
    monkeypatch.setitem(sys.modules, "supervision", None)
    with pytest.raises(MissingDependencyError, match=r"fastsam-torch\[compat\]"):
        result.to_supervision()


def test_compat_results_give_records_of_their_instances(result):
    from fastsam.compat.results import Results

    view = Results(result, np.zeros((*result.image_size, 3), np.uint8), "image0.jpg")[1:3]
    records = view.to_sam_records(output_mode="coco_rle")
    assert [r["segmentation"] for r in records] == [result.rles[i].to_coco() for i in (1, 2)]


@pytest.mark.parametrize("seed", range(12))
def test_small_region_clean_up_matches_sams_algorithm_on_random_masks(seed):
    # Blobs of random sizes, some cut by the image border or spanning it (bands outside the box on two sides),
    # at thresholds from tiny to larger than the background outside the mask's box.
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(8, 40)), int(rng.integers(8, 40))
    mask = rng.random((h, w)) < rng.uniform(0.3, 0.8)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((2, 2), np.uint8)) > 0
    if seed % 3 == 0:
        mask[:, :] = mask & (np.arange(h)[:, None] >= 2) & (np.arange(h)[:, None] < h - 3)  # bands above/below
    if seed % 3 == 1:
        mask[:, :] = mask & (np.arange(w)[None] >= 1) & (np.arange(w)[None] < w - 2)  # bands left/right
    rle = RunLengthMask.from_mask(mask)
    for area in (1, 2, 4, 9, 20, 60, 200, h * w):
        expected = _sam_remove_small_regions(_sam_remove_small_regions(mask, area, "holes"), area, "islands")
        assert np.array_equal(remove_small_regions(rle, area).decode(), expected), (seed, area)
