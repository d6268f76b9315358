"""Prompts on a cached result never run the network and decode only the masks they must."""

from __future__ import annotations

import numpy as np
import pytest

from fastsam.inference.predictor import Predictor
from fastsam.model.checkpoint import load_weights
from fastsam.rle import RunLengthMask
from tests.paths import FIXTURES

pytestmark = pytest.mark.skipif(not (FIXTURES / "fastsam-s-parity.pt").is_file(), reason="../shared/fixtures absent")


@pytest.fixture(scope="module")
def crowded():
    predictor = Predictor(load_weights(FIXTURES / "fastsam-s-parity.pt"))
    result = predictor(FIXTURES / "images" / "000000000009.jpg")
    assert len(result) == 300
    return predictor, result


def test_prompts_do_not_run_the_network_or_decode_every_mask(crowded, monkeypatch):
    predictor, result = crowded
    _ = result.areas, result.mask_bounds  # cached summaries, computed from the run-lengths

    def forbidden(*args, **kwargs):
        raise AssertionError("the network ran for a prompt")

    monkeypatch.setattr(predictor.model, "forward", forbidden)
    decoded: list[int] = []
    original = RunLengthMask.decode_region

    def counting(self, *args):
        decoded.append(id(self))
        return original(self, *args)

    monkeypatch.setattr(RunLengthMask, "decode_region", counting)
    result.prompt(boxes=[[351, 0, 640, 305], [184, 257, 265, 362]])
    assert decoded == []  # box answers come from run-length overlaps

    xs, ys = np.array([322, 621, 404]), np.array([291, 350, 260])
    holders = sum(bool(r.contains(xs, ys).any()) for r in result.rles)
    result.prompt(points=[[322, 291], [621, 350], [404, 260]])
    assert 0 < len(decoded) <= holders < len(result) // 2
