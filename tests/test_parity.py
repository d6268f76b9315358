"""Parity with the original FastSAM implementation on the goldens in ../shared/fixtures.

For every checkpoint and image there: the everything-mode instance count matches and the mean IoU of matched
masks is >= 0.99; box and point prompt answers match with IoU >= 0.98. ``golden_n26_extra.json`` adds
everything-mode goldens on images from ../shared/data (its records name their image by ``source``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fastsam.eval.matching import matched_mask_ious
from fastsam.inference.predictor import Predictor
from fastsam.model.checkpoint import load_weights
from tests.paths import DATA, FIXTURES

GOLDENS = {"fastsam-s-parity.pt": ["golden_s.json"],
           "fastsam-n26-parity.pt": ["golden_n26.json", "golden_n26_extra.json"]}

pytestmark = pytest.mark.skipif(not (FIXTURES / "golden_s.json").is_file(), reason="../shared/fixtures not present")


def _records() -> list[tuple[str, dict]]:
    cases = []
    for checkpoint, goldens in GOLDENS.items():
        for golden in goldens:
            path = FIXTURES / golden
            if path.is_file():
                cases += [(checkpoint, record) for record in json.loads(path.read_text())["records"]
                          if "source" not in record or (DATA / record["source"]).is_file()]
    return cases


def golden_record(checkpoint: str, image: str) -> dict:
    """The original's record for ``image`` (a fixture image name) with ``checkpoint``."""
    return next(record for name, record in _records() if name == checkpoint and record["image"] == image)


def _image_path(record: dict):
    return DATA / record["source"] if "source" in record else FIXTURES / "images" / record["image"]


CASES = _records()


@pytest.fixture(scope="module")
def predictors() -> dict[str, Predictor]:
    return {name: Predictor(load_weights(FIXTURES / name)) for name in GOLDENS}


def cached_results(predictors: dict[str, Predictor]):
    """get(checkpoint, image): the predictor's result on a fixture image, computed once per pair."""
    cache = {}

    def get(checkpoint: str, record: dict):
        image = _image_path(record)
        if (checkpoint, image) not in cache:
            cache[(checkpoint, image)] = predictors[checkpoint](image)
        return cache[(checkpoint, image)]

    return get


@pytest.fixture(scope="module")
def results(predictors):
    return cached_results(predictors)


def _coco(rle: dict) -> dict:
    return {"size": rle["size"], "counts": rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def decode(rle: dict) -> np.ndarray:
    return coco_mask.decode(_coco(rle)).astype(bool)


@pytest.mark.parametrize("checkpoint,record", CASES, ids=[f"{c}-{r['image']}" for c, r in CASES])
def test_everything_matches_original(results, checkpoint, record):
    result = results(checkpoint, record)
    golden = record["everything"]
    assert result.image_size == tuple(record["size"])
    assert len(result) == len(golden["masks"])
    matched = matched_mask_ious([r.to_coco() for r in result.rles], golden["masks"])
    assert matched.mean() >= 0.99, f"mean matched IoU {matched.mean():.4f}"
    # Scores come from the same detections: the sorted score lists agree closely.
    np.testing.assert_allclose(np.sort(result.scores), np.sort(np.asarray(golden["scores"], np.float32)), atol=1e-3)


@pytest.mark.parametrize("checkpoint,record", [c for c in CASES if c[1].get("box_prompts")],
                         ids=[f"{c}-{r['image']}" for c, r in CASES if r.get("box_prompts")])
def test_box_prompts_match_original(results, checkpoint, record):
    result = results(checkpoint, record)
    for prompt in record["box_prompts"]:
        selection = result.prompt(boxes=[prompt["box"]])
        assert len(selection) == len(prompt["masks"]) == 1
        iou = mask_iou(selection.masks[0].decode(), decode(prompt["masks"][0]))
        assert iou >= 0.98, f"box {prompt['box']}: IoU {iou:.4f}"


@pytest.mark.parametrize("checkpoint,record", [c for c in CASES if c[1].get("point_prompts")],
                         ids=[f"{c}-{r['image']}" for c, r in CASES if r.get("point_prompts")])
def test_point_prompts_match_original(results, checkpoint, record):
    result = results(checkpoint, record)
    for prompt in record["point_prompts"]:
        selection = result.prompt(points=prompt["points"], labels=prompt["labels"])
        assert len(selection) == 1
        iou = mask_iou(selection.masks[0].decode(), decode(prompt["masks"][0]))
        assert iou >= 0.98, f"points {prompt['points']} labels {prompt['labels']}: IoU {iou:.4f}"


def test_several_boxes_answer_in_order(results):
    checkpoint, record = next(c for c in CASES if c[1].get("box_prompts"))
    result = results(checkpoint, record)
    boxes = [p["box"] for p in record["box_prompts"]]
    selection = result.prompt(boxes=boxes)
    assert len(selection) == len(boxes)
    for mask, prompt in zip(selection.masks, record["box_prompts"]):
        assert mask_iou(mask.decode(), decode(prompt["masks"][0])) >= 0.98




@pytest.mark.skipif(not (FIXTURES / "yolov8n-seg-coco128-ultralytics84.pt").is_file(), reason="fixture absent")
def test_recent_ultralytics_checkpoint_counts():
    # The fixture README: Ultralytics' FastSAM predictor finds 0 instances at conf 0.4 and 37 at 0.05 on dogs.jpg.
    predictor = Predictor(load_weights(FIXTURES / "yolov8n-seg-coco128-ultralytics84.pt"))
    assert len(predictor(FIXTURES / "images" / "dogs.jpg")) == 0
    assert len(predictor(FIXTURES / "images" / "dogs.jpg", conf=0.05)) == 37
