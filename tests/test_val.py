"""Validation: known AP / AR for hand-made results, the end-to-end path with a model, and ``fastsam val``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fastsam.result import SegmentationResult
from fastsam.rle import RunLengthMask
from fastsam.train.validate import score_results, validate
from tests.test_trainer import make_shapes_dataset


def _results_from_truth(ground_truth: dict, keep: int | None = None, shift: int = 0
                        ) -> list[tuple[int, SegmentationResult]]:
    """Per image, a result holding its ground-truth instances (the first ``keep``), moved right by ``shift``."""
    results = []
    for image in ground_truth["images"]:
        h, w = image["height"], image["width"]
        anns = [a for a in ground_truth["annotations"] if a["image_id"] == image["id"]][:keep]
        rles, boxes = [], []
        for a in anns:
            mask = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(a["segmentation"], h, w))).astype(bool)
            rles.append(RunLengthMask.from_mask(np.roll(mask, shift, axis=1)))
            x, y, bw, bh = a["bbox"]
            boxes.append([x + shift, y, x + shift + bw, y + bh])
        results.append((image["id"], SegmentationResult((h, w), np.array(boxes, np.float32).reshape(-1, 4),
                                                         np.linspace(0.9, 0.5, len(rles)).astype(np.float32), rles)))
    return results


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory):
    from fastsam.train.data import coco_ground_truth, open_source

    source = open_source(make_shapes_dataset(tmp_path_factory.mktemp("val") / "shapes", count=4, seed=5))
    return source, coco_ground_truth(source)


def test_perfect_results_score_one_and_shifted_ones_zero(shapes) -> None:
    _, truth = shapes
    perfect = score_results(truth, _results_from_truth(truth))
    for key in ("box/AP", "box/AP50", "mask/AP", "mask/AP50", "box/AR@100", "mask/AR@1000"):
        assert perfect[key] == pytest.approx(1.0), key
    far = score_results(truth, _results_from_truth(truth, shift=60))  # 60 of 96 px: no overlap with any shape
    assert far["mask/AP50"] == pytest.approx(0.0) and far["box/AR@100"] == pytest.approx(0.0)


def test_recall_counts_the_instances_found(shapes) -> None:
    _, truth = shapes
    found = score_results(truth, _results_from_truth(truth, keep=1))
    expected = len(truth["images"]) / len(truth["annotations"])  # one instance found per image
    assert found["mask/AR@100"] == pytest.approx(expected)
    assert found["box/AR@1000"] == pytest.approx(expected)


def test_validate_runs_a_model_without_changing_it(shapes) -> None:
    import torch

    from fastsam.model.config import YoloV8SegConfig
    from fastsam.model.yolov8_seg import YoloV8Seg

    source, _ = shapes
    torch.manual_seed(0)
    model = YoloV8Seg(YoloV8SegConfig.from_scale("n"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    metrics = validate(model, source, imgsz=64, max_det=20, limit=2, progress=False)
    assert set(metrics) >= {"box/AP50", "mask/AP50", "box/AR@100", "mask/AR@1000"}
    assert all(-1.0 <= v <= 1.0 for v in metrics.values())
    assert model.state_dict().keys() == before.keys()  # not fused
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_val_cli(shapes, tiny_model: Path, tmp_path: Path) -> None:
    from fastsam.cli import main

    source, _ = shapes
    data = source.image_path(0).parent.parent
    out = tmp_path / "metrics.json"
    assert main(["val", str(tiny_model), str(data), "--imgsz", "64", "--max-det", "10", "--quiet", "--json",
                 str(out)]) == 0
    assert "mask/AP50" in json.loads(out.read_text())
    assert main(["val", str(tiny_model), str(tmp_path / "missing"), "--quiet"]) == 2
    assert main(["val", str(tiny_model), str(data), "--limit", "0", "--quiet"]) == 2
