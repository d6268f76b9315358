"""``fastsam bench``: every task reachable from the command line, errors as exit code 2, the paper report."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from fastsam.cli import main
from fastsam.eval.report import PAPER_EDGES, load_results, render_report
from fastsam.model.zoo import BUNDLED_CONF, BUNDLED_IOU, DEFAULT_CONF, DEFAULT_IOU
from tests.test_eval_coco import write_coco_set


def test_proposals_and_boxes_from_the_command_line(tmp_path: Path, tiny_model: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    annotations = write_coco_set(tmp_path / "set")
    common = ["--model", str(tiny_model), "--imgsz", "64", "--max-det", "10", "--quiet"]
    assert main(["bench", "proposals", str(annotations), "--out", str(tmp_path / "p"), *common]) == 0
    assert json.loads((tmp_path / "p" / "proposals.json").read_text())["settings"]["max_det"] == 10
    assert main(["bench", "boxes", str(annotations), "--out", str(tmp_path / "b"), "--conf", "0", *common]) == 0
    assert json.loads((tmp_path / "b" / "boxes.json").read_text())["prompts"] == 3
    assert main(["bench", "report", str(tmp_path / "p"), str(tmp_path / "b"), "--out", str(tmp_path / "r.md")]) == 0
    report = (tmp_path / "r.md").read_text()
    assert "| paper: FastSAM (COCO val2017) | 15.7 | 47.3 | 63.7 | 32.2 |" in report
    assert "ground-truth boxes" in report and "## Edge detection" not in report
    # A user mistake: one line on stderr, exit code 2.
    assert main(["bench", "boxes", str(tmp_path / "none.json"), "--out", str(tmp_path / "x"), *common]) == 2
    assert "fastsam: error: no such annotations file" in capsys.readouterr().err


def test_edges_command_calls_the_edges_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def run_edges_benchmark(method, data_root, out_dir, **kwargs):
        calls.append((method, data_root, out_dir, kwargs))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "edges.md").write_text("table\n")
        return {}

    fake = types.ModuleType("fastsam.eval.edges")
    fake.run_edges_benchmark = run_edges_benchmark
    fake.EDGE_METHODS = ("fastsam", "canny")
    monkeypatch.setitem(sys.modules, "fastsam.eval.edges", fake)
    assert main(["bench", "edges", "bsds", "--out", str(tmp_path), "--method", "canny", "--max-images", "3",
                 "--quiet"]) == 0
    method, root, out, kwargs = calls[0]
    assert (method, root, kwargs["model"], kwargs["max_images"], kwargs["split"]) == ("canny", "bsds", None, 3, "val")
    assert main(["bench", "edges", "bsds", "--out", str(tmp_path), "--quiet"]) == 2  # fastsam edges need a model
    # Each model at its own thresholds, as `fastsam segment` runs it; explicit values win.
    for extra, expected in ((["--model", "fastsam-default"], (BUNDLED_CONF, BUNDLED_IOU)),
                            (["--model", "FastSAM-x"], (DEFAULT_CONF, DEFAULT_IOU)),
                            (["--model", "fastsam-default", "--conf", "0.3", "--iou", "0.5"], (0.3, 0.5))):
        calls.clear()
        assert main(["bench", "edges", "bsds", "--out", str(tmp_path), "--quiet", *extra]) == 0
        assert (calls[0][3]["conf"], calls[0][3]["iou"]) == expected
    assert (BUNDLED_CONF, BUNDLED_IOU) != (DEFAULT_CONF, DEFAULT_IOU)


def test_bench_tasks_default_to_the_models_own_thresholds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def run_clicks_benchmark(data_root, out_dir, **kwargs):
        seen.update(kwargs)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "clicks.md").write_text("table\n")
        return {}

    monkeypatch.setattr("fastsam.eval.clicks.run_clicks_benchmark", run_clicks_benchmark)
    assert main(["bench", "clicks", "grabcut", "--out", str(tmp_path), "--model", "fastsam-default", "--quiet"]) == 0
    assert (seen["conf"], seen["iou"]) == (BUNDLED_CONF, BUNDLED_IOU)


def test_report_reads_edge_results_and_clicks(tmp_path: Path) -> None:
    (tmp_path / "edges").mkdir()
    (tmp_path / "edges" / "edges.json").write_text(json.dumps(
        {"method": "canny", "images": 100, "metrics": {"ODS": {"F": 0.6}, "OIS": {"F": 0.62}, "AP": 0.55, "R50": 0.7}}))
    (tmp_path / "clicks.json").write_text(json.dumps(
        {"task": "clicks", "model": "m.pt", "images": 2, "miou": [0.5] * 20, "NoC@85": 20.0, "NoC@90": 20.0,
         "failures@90": 2}))
    (tmp_path / "cache-clicks").mkdir()
    (tmp_path / "cache-clicks" / "a.json").write_text(json.dumps({"task": "clicks"}))  # never read
    (tmp_path / "notes.json").write_text("[1, 2]")  # not a summary: skipped
    results = load_results([tmp_path])
    assert sorted(r["task"] for r in results) == ["clicks", "edges"]
    report = render_report(results)
    ods, ois, ap, r50 = PAPER_EDGES["FastSAM"]
    assert f"| paper: FastSAM | {ods:.3f} | {ois:.3f} | {ap:.3f} | {r50:.3f} |" in report
    assert "| measured: canny, 100 images | 0.600 | 0.620 | 0.550 | 0.700 |" in report
    assert "| measured: fastsam m.pt, 2 images | 20.000 | 20.000 | 2 | 0.500 | 0.500 | 0.500 |" in report
    with pytest.raises(Exception, match="no benchmark results"):
        render_report([])
