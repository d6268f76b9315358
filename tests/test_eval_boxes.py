"""Box-prompt task: known answers with an oracle predictor (ground-truth and detection boxes) and edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fastsam.errors import InvalidInputError
from fastsam.eval.boxes import prompt_boxes, run_boxes_benchmark
from fastsam.result import SegmentationResult
from tests.test_eval_coco import OraclePredictor, write_coco_set


def test_ground_truth_boxes_pick_their_own_masks(tmp_path: Path) -> None:
    annotations = write_coco_set(tmp_path / "set")
    oracle = OraclePredictor(json.loads(annotations.read_text()))
    summary = run_boxes_benchmark(annotations, tmp_path / "out", model=oracle, progress=False)
    assert summary["prompts"] == 3  # the crowd region is not a prompt
    assert summary["mask"]["AP"] == pytest.approx(1.0)
    assert summary["mean_iou"] == pytest.approx(1.0) and summary["mean_iou_small"] == pytest.approx(1.0)
    assert summary["mean_iou_large"] is None
    assert "| ground truth | 1.000 |" in (tmp_path / "out" / "boxes.md").read_text()


def test_detection_boxes_keep_their_scores_and_a_wrong_box_costs_ap(tmp_path: Path) -> None:
    annotations = write_coco_set(tmp_path / "set")
    oracle = OraclePredictor(json.loads(annotations.read_text()))
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [35, 5, 25, 30], "score": 0.8},
        {"image_id": 2, "category_id": 1, "bbox": [5, 20, 30, 20], "score": 0.7},
        {"image_id": 2, "category_id": 1, "bbox": [5, 20, 30, 20], "score": 0.01},  # dropped by min_score
    ]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(detections))
    summary = run_boxes_benchmark(annotations, tmp_path / "out", model=oracle, detections=path, min_score=0.05,
                                  progress=False)
    assert summary["prompts"] == 3 and summary["mask"]["AP"] == pytest.approx(1.0) and "mean_iou" not in summary
    # A detection labelled with the wrong category matches nothing (class-aware AP). Scored below both true
    # category-1 detections, it leaves category 1's AP at 1; category 2 drops to 0: the mean is 0.5.
    detections[1].update(category_id=1, score=0.6)
    path.write_text(json.dumps(detections))
    wrong = run_boxes_benchmark(annotations, tmp_path / "out2", model=oracle, detections=path, min_score=0.05,
                                progress=False)
    assert wrong["mask"]["AP"] == pytest.approx(0.5)


def test_prompt_boxes_without_instances_or_with_degenerate_boxes_gives_empty_masks() -> None:
    nothing = SegmentationResult((10, 12), np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [])
    [(mask, score)] = prompt_boxes(nothing, np.array([[1.0, 1.0, 5.0, 5.0]]))
    assert mask.area == 0 and score == 0.0 and mask.size == (10, 12)


def test_bad_inputs(tmp_path: Path) -> None:
    annotations = write_coco_set(tmp_path / "set")
    oracle = OraclePredictor(json.loads(annotations.read_text()))
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    with pytest.raises(InvalidInputError, match="list of COCO results"):
        run_boxes_benchmark(annotations, tmp_path / "o", model=oracle, detections=tmp_path / "bad.json")
    with pytest.raises(InvalidInputError, match="cannot read detections"):
        run_boxes_benchmark(annotations, tmp_path / "o", model=oracle, detections=tmp_path / "none.json")
    with pytest.raises(InvalidInputError, match="min_score"):
        run_boxes_benchmark(annotations, tmp_path / "o", model=oracle, min_score=2)
