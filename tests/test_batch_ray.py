"""The Ray engine on a local Ray instance (2 CPUs, 127.0.0.1 only): the same files as the local engine, and the
same resume rule (only missing shards are computed). Skipped when Ray Data is not installed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

# Before Ray is imported: single-node mode (Ray binds and advertises 127.0.0.1), no usage reporting.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from fastsam.batch import read_errors, read_records, run_batch  # noqa: E402
from fastsam.model.checkpoint import save_native  # noqa: E402
from fastsam.model.config import YoloV8SegConfig  # noqa: E402
from fastsam.model.yolov8_seg import YoloV8Seg  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SETTINGS = {"imgsz": 128, "conf": 0.0, "max_det": 5, "shard_size": 4}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ray_job")
    model = root / "tiny.safetensors"
    save_native(YoloV8Seg(YoloV8SegConfig.from_scale("n")), model)
    folder = root / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(10):
        image = cv2.GaussianBlur(rng.integers(0, 255, (180 + 20 * (i % 3), 260, 3), dtype=np.uint8), (9, 9), 3)
        cv2.imwrite(str(folder / ("sub" if i % 4 == 0 else "") / f"im{i}.jpg"), image)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder, model


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl"))}


def test_ray_engine_writes_what_the_local_engine_writes_and_resumes(tmp_path, local_ray, job_inputs):
    assert local_ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
    folder, model = job_inputs
    local = run_batch(folder, tmp_path / "local", model, engine="local", **SETTINGS)
    summary = run_batch(folder, tmp_path / "ray", model, engine="ray", workers=2, threads=1, **SETTINGS)
    assert (summary.inputs, summary.records, summary.errors, summary.processed) == (11, 10, 1, 11)
    assert (local.records, local.errors) == (10, 1)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert list(read_records(tmp_path / "ray")) == list(read_records(tmp_path / "local"))
    assert [e["file"] for e in read_errors(tmp_path / "ray")] == ["corrupt.png"]

    # Resume on Ray: a lost shard (as after a crash) is the only work done by the next run.
    (tmp_path / "ray" / "shard-00001.jsonl").unlink()
    again = run_batch(folder, tmp_path / "ray", model, engine="ray", workers=1, threads=1, **SETTINGS)
    assert again.processed == 4
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
