"""Object proposals task: known answers with an oracle predictor, resume, settings guard, a real tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastsam.errors import InvalidInputError
from fastsam.eval.proposals import run_proposals_benchmark
from tests.test_eval_coco import OraclePredictor, write_coco_set


def test_oracle_proposals_have_full_recall_and_the_run_resumes(tmp_path: Path) -> None:
    annotations = write_coco_set(tmp_path / "set")
    oracle = OraclePredictor(json.loads(annotations.read_text()))
    out = tmp_path / "out"
    summary = run_proposals_benchmark(annotations, out, model=oracle, progress=False)
    assert summary["images"] == 2 and summary["computed_images"] == 2
    for kind in ("box", "mask"):
        assert summary[kind]["AR@10"] == pytest.approx(1.0)
        assert summary[kind]["AR@1000"] == pytest.approx(1.0)
    assert oracle.calls[0]["conf"] == 0.001 and oracle.calls[0]["max_det"] == 1000
    assert json.loads((out / "proposals.json").read_text())["box"]["AR@100"] == pytest.approx(1.0)
    assert "| box | 1.000 | 1.000 | 1.000 |" in (out / "proposals.md").read_text()
    # Same command again: everything comes from the per-image cache.
    again = run_proposals_benchmark(annotations, out, model=oracle, progress=False)
    assert again["computed_images"] == 0 and len(oracle.calls) == 2 and again["mask"] == summary["mask"]
    with pytest.raises(InvalidInputError, match="other settings.*conf"):
        run_proposals_benchmark(annotations, out, model=oracle, conf=0.5, progress=False)


def test_max_images_and_bad_inputs(tmp_path: Path) -> None:
    annotations = write_coco_set(tmp_path / "set")
    oracle = OraclePredictor(json.loads(annotations.read_text()))
    summary = run_proposals_benchmark(annotations, tmp_path / "one", model=oracle, max_images=1, progress=False)
    assert summary["images"] == 1 and summary["box"]["AR@100"] == pytest.approx(1.0)
    with pytest.raises(InvalidInputError, match="max_images"):
        run_proposals_benchmark(annotations, tmp_path / "x", model=oracle, max_images=0)
    with pytest.raises(InvalidInputError, match="no such annotations"):
        run_proposals_benchmark(tmp_path / "missing.json", tmp_path / "x", model=oracle)
    with pytest.raises(InvalidInputError, match="image folder"):
        run_proposals_benchmark(annotations, tmp_path / "x", model=oracle, images=tmp_path / "nowhere")
    with pytest.raises(InvalidInputError, match="a model is needed"):
        run_proposals_benchmark(annotations, tmp_path / "x", model=None)


def test_a_real_model_runs_end_to_end(tmp_path: Path, tiny_model: Path) -> None:
    annotations = write_coco_set(tmp_path / "set")
    summary = run_proposals_benchmark(annotations, tmp_path / "out", model=tiny_model, imgsz=64, max_det=20,
                                      progress=False)
    assert summary["proposals_per_image"] == 20  # conf 0.001 keeps max_det candidates of a random model
    for metric, value in summary["mask"].items():
        assert value == -1.0 or 0.0 <= value <= 1.0, metric
