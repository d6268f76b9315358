"""Shared pytest fixtures. Keep each fixture small and documented; paths to shared data live in tests/paths.py."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.paths import FIXTURES


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised YOLOv8n-seg in the native format: always available, fast; with conf 0 it yields
    max-det instances per image."""
    import torch

    from fastsam.model.checkpoint import save_native
    from fastsam.model.config import YoloV8SegConfig
    from fastsam.model.yolov8_seg import YoloV8Seg

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_native(YoloV8Seg(YoloV8SegConfig.from_scale("n")), path)
    return path


@pytest.fixture
def shared_fixture() -> Callable[[str], Path]:
    """Return a function giving the path of a file in ../shared/fixtures, skipping the test when it is absent."""

    def get(name: str) -> Path:
        path = FIXTURES / name
        if not path.is_file():
            pytest.skip(f"shared fixture {name} not present ({FIXTURES})")
        return path

    return get


@pytest.fixture
def model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model cache folder ($FASTSAM_CACHE) with downloads allowed ($FASTSAM_OFFLINE unset)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FASTSAM_CACHE", str(cache))
    monkeypatch.delenv("FASTSAM_OFFLINE", raising=False)
    return cache
