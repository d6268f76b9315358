"""COCOeval wrapper: known answers on hand-made ground truth, and COCO results from segmentations.

Also home of the small synthetic COCO set and the "oracle" predictor (it returns the ground-truth masks) that
the proposals, boxes and CLI tests share.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam.errors import InvalidInputError
from fastsam.eval.coco import evaluate_coco, result_to_detections
from fastsam.inference.predictor import Predictor
from fastsam.result import SegmentationResult
from fastsam.rle import RunLengthMask

HEIGHT, WIDTH = 48, 64


def rectangle(x: float, y: float, w: float, h: float) -> list[list[float]]:
    """A COCO polygon of an axis-aligned rectangle."""
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def annotation(ann_id: int, image_id: int, box: tuple[float, float, float, float], category: int = 1,
               crowd: int = 0) -> dict:
    x, y, w, h = box
    return {"id": ann_id, "image_id": image_id, "category_id": category, "bbox": [x, y, w, h], "area": w * h,
            "iscrowd": crowd, "segmentation": rectangle(x, y, w, h)}


def make_ground_truth(annotations: list[dict], image_ids: tuple[int, ...] = (1,)) -> dict:
    return {"images": [{"id": i, "file_name": f"{i}.png", "height": HEIGHT, "width": WIDTH} for i in image_ids],
            "annotations": annotations, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def rect_mask(box: tuple[float, float, float, float]) -> np.ndarray:
    x, y, w, h = (int(v) for v in box)
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[y:y + h, x:x + w] = True
    return mask


def detection(image_id: int, box: tuple[float, float, float, float], score: float, category: int = 1) -> dict:
    return {"image_id": image_id, "category_id": category, "bbox": list(box), "score": score,
            "segmentation": RunLengthMask.from_mask(rect_mask(box)).to_coco()}


def write_coco_set(root: Path) -> Path:
    """Two 64x48 images with rectangles (one crowd region); returns the annotations path. Layout as COCO:
    root/annotations/instances_val.json and root/val/<id>.png."""
    annotations = [annotation(1, 1, (10, 10, 20, 20), 1), annotation(2, 1, (35, 5, 25, 30), 2),
                   annotation(3, 2, (5, 20, 30, 20), 1), annotation(4, 2, (40, 30, 10, 10), 1, crowd=1)]
    ground_truth = make_ground_truth(annotations, (1, 2))
    (root / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    for img in ground_truth["images"]:
        picture = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
        cv2.imwrite(str(root / "val" / img["file_name"]), picture)
    path = root / "annotations" / "instances_val.json"
    path.write_text(json.dumps(ground_truth))
    return path


class OraclePredictor(Predictor):
    """Stands in for the network: "finds" exactly the ground-truth rectangles (crowd ones excluded), scored
    0.9, 0.8, ...; records the settings it was called with."""

    def __init__(self, ground_truth: dict) -> None:  # no model: nothing of Predictor's setup is needed
        self.by_file = {img["file_name"]: img["id"] for img in ground_truth["images"]}
        self.annotations = ground_truth["annotations"]
        self.calls: list[dict] = []

    def __call__(self, image, **settings) -> SegmentationResult:  # type: ignore[override]
        self.calls.append(settings)
        image_id = self.by_file[Path(image).name]
        anns = [a for a in self.annotations if a["image_id"] == image_id and not a["iscrowd"]]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
        return SegmentationResult((HEIGHT, WIDTH), boxes.reshape(-1, 4),
                                  np.linspace(0.9, 0.5, max(len(anns), 1))[:len(anns)].astype(np.float32),
                                  [RunLengthMask.from_mask(rect_mask(a["bbox"])) for a in anns], source=str(image))


# ------------------------------------------------------------------------------------------- evaluate_coco
def test_perfect_detections_score_one_and_none_score_zero() -> None:
    gt = make_ground_truth([annotation(1, 1, (10, 10, 20, 20)), annotation(2, 1, (35, 5, 25, 30))])
    perfect = [detection(1, (10, 10, 20, 20), 0.9), detection(1, (35, 5, 25, 30), 0.8)]
    for iou_type in ("segm", "bbox"):
        metrics = evaluate_coco(gt, perfect, iou_type)
        assert metrics["AP"] == pytest.approx(1.0) and metrics["AR@1000"] == pytest.approx(1.0)
        assert metrics["AR@10"] == pytest.approx(1.0)
    empty = evaluate_coco(gt, [])
    assert empty["AP"] == 0.0 and empty["AR@100"] == 0.0
    # Both rectangles (400 and 750 px) are small (< 32^2): no medium or large ground truth, marked -1.
    assert empty["AR_small@1000"] == 0.0 and empty["AR_medium@1000"] == -1.0 and empty["AR_large@1000"] == -1.0


def test_partial_overlap_counts_at_loose_thresholds_only() -> None:
    gt = make_ground_truth([annotation(1, 1, (10, 10, 20, 20))])
    shifted = [detection(1, (14, 10, 20, 20), 0.9)]  # IoU 16*20 / (2*400 - 320) = 2/3
    metrics = evaluate_coco(gt, shifted, "segm")
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == 0.0
    # Matched at the thresholds 0.50, 0.55, 0.60, 0.65 of ten: recall 0.4.
    assert metrics["AR@10"] == pytest.approx(0.4)


def test_max_dets_limits_recall_to_the_best_scored() -> None:
    gt = make_ground_truth([annotation(1, 1, (10, 10, 20, 20)), annotation(2, 1, (35, 5, 25, 30))])
    dets = [detection(1, (10, 10, 20, 20), 0.9), detection(1, (35, 5, 25, 30), 0.1)]
    metrics = evaluate_coco(gt, dets, "bbox", max_dets=(1, 10))
    assert metrics["AR@1"] == pytest.approx(0.5) and metrics["AR@10"] == pytest.approx(1.0)


def test_class_agnostic_ignores_categories_and_crowds_are_not_misses() -> None:
    gt = make_ground_truth([annotation(1, 1, (10, 10, 20, 20), category=2),
                            annotation(2, 1, (40, 30, 10, 10), crowd=1)])
    dets = [detection(1, (10, 10, 20, 20), 0.9, category=1), detection(1, (40, 30, 10, 10), 0.8)]
    assert evaluate_coco(gt, dets, class_agnostic=True)["AP"] == pytest.approx(1.0)
    assert evaluate_coco(gt, dets, class_agnostic=False)["AR@100"] == 0.0


def test_image_ids_restrict_the_evaluation() -> None:
    gt = make_ground_truth([annotation(1, 1, (10, 10, 20, 20)), annotation(2, 2, (10, 10, 20, 20))], (1, 2))
    dets = [detection(1, (10, 10, 20, 20), 0.9)]
    assert evaluate_coco(gt, dets)["AR@100"] == pytest.approx(0.5)
    assert evaluate_coco(gt, dets, image_ids=[1])["AR@100"] == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"ground_truth": {"images": []}}, "COCO instances dict"),
    ({"iou_type": "keypoints"}, "iou_type"),
    ({"max_dets": (0,)}, "max_dets"),
    ({"detections": [{"image_id": 7, "score": 1, "segmentation": {}}]}, "image_id 7"),
    ({"detections": [{"image_id": 1}]}, "detection 0"),
    ({"image_ids": [5]}, "image_ids"),
])
def test_bad_arguments_raise_clear_errors(kwargs: dict, message: str) -> None:
    arguments = {"ground_truth": make_ground_truth([annotation(1, 1, (10, 10, 20, 20))]), "detections": []}
    arguments.update(kwargs)
    with pytest.raises(InvalidInputError, match=message):
        evaluate_coco(**arguments)


# --------------------------------------------------------------------------------------- result_to_detections
def test_result_to_detections_round_trips_through_evaluation() -> None:
    gt = make_ground_truth([annotation(1, 1, (10, 10, 20, 20)), annotation(2, 1, (35, 5, 25, 30))])
    result = OraclePredictor(gt)("1.png")
    dets = result_to_detections(result, 1)
    assert [d["bbox"] for d in dets] == [[10.0, 10.0, 20.0, 20.0], [35.0, 5.0, 25.0, 30.0]]
    assert [d["category_id"] for d in dets] == [1, 1] and dets[0]["score"] == pytest.approx(0.9)
    assert evaluate_coco(gt, json.loads(json.dumps(dets)))["AP"] == pytest.approx(1.0)
    boxes_only = result_to_detections(result, 1, with_masks=False)
    assert "segmentation" not in boxes_only[0] and evaluate_coco(gt, boxes_only, "bbox")["AP"] == pytest.approx(1.0)
    # A selection: the chosen masks with their tight boxes.
    chosen = result_to_detections(result.prompt(boxes=[[35, 5, 60, 35]]), 1)
    assert len(chosen) == 1 and chosen[0]["bbox"] == [35.0, 5.0, 25.0, 30.0]
    with pytest.raises(InvalidInputError, match="image_id"):
        result_to_detections(result, "1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="SegmentationResult or Selection"):
        result_to_detections([], 1)
