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

    points, labels = [[178, 280], [541, 328], [144, 389]], [1, 1, 0]
    merged = result.prompt(points=points, labels=labels).masks[0]
    assert decoded == []  # point answers combine the holders' runs

    # The original rule on decoded masks: largest first, the last point inside an instance decides.
    xs, ys = np.array(points).T
    holders = [n for n, r in enumerate(result.rles) if r.contains(xs, ys).any()]
    assert len(holders) >= 3
    expected = np.zeros(result.image_size, bool)
    for n in sorted(holders, key=lambda i: -result.areas[i]):
        last = np.flatnonzero(result.rles[n].contains(xs, ys))[-1]
        region = original(result.rles[n], 0, 0, result.image_size[1], result.image_size[0])
        expected = expected | region if labels[last] == 1 else expected & ~region
    assert expected.any()
    np.testing.assert_array_equal(merged.decode(), expected)


def test_box_prompts_pick_the_best_iou_of_every_instance(crowded):
    # Box answers read the runs of only the masks that could win; the pick must still be the argmax (first on
    # ties) of the float32 IoU of every instance, computed here from the decoded masks.
    _, result = crowded
    h, w = result.image_size
    decoded = np.stack([r.decode() for r in result.rles])
    areas = decoded.sum((1, 2)).astype(np.float32)
    rng = np.random.default_rng(0)
    boxes = [np.sort(rng.integers(0, (w, h), (2, 2)), axis=0).ravel() + [0, 0, 1, 1] for _ in range(25)]
    boxes += [np.array([0, 0, w, h]), np.array([w - 2, h - 2, w, h])]
    for x1, y1, x2, y2 in boxes:
        inside = decoded[:, y1:y2, x1:x2].sum((1, 2)).astype(np.float32)
        union = np.float32((x2 - x1) * (y2 - y1)) + areas - inside
        ious = np.where(union > 0, inside / union, np.float32(0))
        picked = result.prompt(boxes=[[x1, y1, x2, y2]]).instance_ids[0]
        assert picked == int(np.argmax(ious)), (x1, y1, x2, y2)


def test_point_prompts_keep_the_runs_once_and_match_per_point_rule(crowded):
    # The run table the point prompts use replaces the masks' arrays (views of it): the same pixels, held once.
    predictor, _ = crowded
    result = predictor(FIXTURES / "images" / "000000000009.jpg")
    before = [(r.starts.copy(), r.ends.copy()) for r in result.rles]
    xs, ys = np.array([178, 541, 144]), np.array([280, 328, 389])
    picks = result.prompt(points=np.stack((xs, ys), 1), per_point=True)
    table = result.run_table
    for mask, (starts, ends) in zip(result.rles, before):
        np.testing.assert_array_equal(mask.starts, starts)
        np.testing.assert_array_equal(mask.ends, ends)
        assert np.shares_memory(mask.starts, table.starts)
    # Per point: the smallest instance holding it (no background points here).
    for k, index in enumerate(picks.instance_ids):
        holders = [n for n, r in enumerate(result.rles) if r.contains(xs[k:k + 1], ys[k:k + 1])[0]]
        assert index == min(holders, key=lambda n: (result.areas[n], n))
        np.testing.assert_array_equal(picks.masks[k].starts, result.rles[index].starts)
