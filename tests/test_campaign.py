"""campaign/save_run.py: the committed state of a campaign run (fp16 EMA weights and the whole history) and going
on from it with --start-epoch."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from campaign.save_run import save_run
from fastsam.model.zoo import load_model
from fastsam.train.trainer import Trainer
from tests.test_trainer import make_shapes_dataset, tiny_config


def test_saved_run_keeps_its_history_across_a_restart_from_its_weights(tmp_path: Path) -> None:
    data = make_shapes_dataset(tmp_path / "shapes", count=2)
    stem = tmp_path / "repo" / "run"
    Trainer(tiny_config(data, tmp_path / "first", epochs=3), progress=False).fit(stop_after_epochs=2)
    saved = save_run(tmp_path / "first", stem)
    assert saved["epoch"] == 2 and [row["epoch"] for row in saved["history"]] == [1, 2]
    weights = stem.with_suffix(".safetensors")
    assert weights.stat().st_size < 0.55 * (tmp_path / "first" / "weights" / "last.safetensors").stat().st_size
    ema = load_model(tmp_path / "first" / "weights" / "last.safetensors")
    for name, value in load_model(weights).state_dict().items():
        assert torch.equal(value, ema.state_dict()[name].half().float()), name

    # The run folder is lost: the next session starts a new one from the committed weights at the saved epoch.
    Trainer(tiny_config(data, tmp_path / "second", epochs=3, model=str(weights), start_epoch=saved["epoch"]),
            progress=False).fit()
    saved = save_run(tmp_path / "second", stem)
    assert saved["epoch"] == 3 and [row["epoch"] for row in saved["history"]] == [1, 2, 3]
    assert json.loads(stem.with_suffix(".json").read_text()) == json.loads(json.dumps(saved))
