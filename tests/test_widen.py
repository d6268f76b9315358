"""Widening a trained model's box range (reg_max): the same predictions, then longer boxes learnable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastsam.errors import InvalidInputError
from fastsam.model.zoo import load_model
from fastsam.model.widen import widen_reg_max
from tests.test_trainer import make_shapes_dataset, tiny_config


@pytest.fixture(scope="module")
def bundled() -> torch.nn.Module:
    return load_model("fastsam-default")  # trained weights: real, peaked box distributions


def test_widened_model_predicts_the_same(bundled) -> None:
    torch.manual_seed(0)
    images = torch.rand(2, 3, 256, 320)
    bins = bundled.cfg.reg_max
    wider = widen_reg_max(bundled, bins + 10)
    assert wider.cfg.reg_max == bins + 10 and not wider.training
    with torch.no_grad():
        before, protos_before = bundled(images)
        after, protos_after = wider(images)
    assert after.shape == before.shape
    assert torch.equal(protos_after, protos_before)
    assert torch.equal(after[:, 4:], before[:, 4:])  # class scores and mask coefficients: untouched branches
    assert (after[:, :4] - before[:, :4]).abs().max().item() < 1e-3  # boxes, in input pixels
    # The new bins are trainable and start with no mass: the widened branch's outputs for them sit far below.
    logits = wider.head.box_convs[0](torch.zeros(1, wider.head.box_convs[0][0].conv.in_channels, 4, 4))
    per_side = logits.unflatten(1, (4, bins + 10)).softmax(2)
    assert per_side[:, :, bins:].max().item() < 1e-9
    assert all(p.requires_grad for p in wider.parameters())


def test_widening_is_refused_where_it_would_not_widen(bundled) -> None:
    bins = bundled.cfg.reg_max
    for bad in (bins, bins - 8, float(bins + 10), True, str(bins + 10)):
        with pytest.raises(InvalidInputError, match="reg_max"):
            widen_reg_max(bundled, bad)
    with pytest.raises(InvalidInputError, match="YoloV8Seg"):
        widen_reg_max(torch.nn.Linear(2, 2), 26)


def test_fine_tuning_with_a_larger_reg_max_widens_the_checkpoint(tmp_path: Path, bundled) -> None:
    from fastsam.train.trainer import Trainer

    bins = bundled.cfg.reg_max
    data = make_shapes_dataset(tmp_path / "shapes", count=2)
    trainer = Trainer(tiny_config(data, tmp_path / "run", model="fastsam-default", reg_max=bins + 4, epochs=1),
                      progress=False)
    assert trainer.model.cfg.reg_max == bins + 4
    trainer.fit()
    assert load_model(tmp_path / "run" / "weights" / "last.safetensors").cfg.reg_max == bins + 4
    kept = Trainer(tiny_config(data, tmp_path / "run2", model="fastsam-default", reg_max=8, epochs=1), progress=False)
    assert kept.model.cfg.reg_max == bins  # a smaller reg_max keeps the checkpoint's
