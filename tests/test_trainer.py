"""Trainer: a CI-sized smoke run whose loss falls, exact resume, checkpoint contents, and the train CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fastsam.errors import InvalidInputError
from fastsam.train.trainer import TrainConfig, Trainer


def make_shapes_dataset(folder: Path, count: int = 4, size: int = 96, seed: int = 0) -> Path:
    """A YOLO-seg folder (images/, labels/) of bright rectangles and ellipses on dark noise, each shape one
    instance whose polygon is its exact outline."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for k in range(count):
        image = (rng.random((size, size, 3)) * 50).astype(np.uint8)
        lines = []
        for j in range(int(rng.integers(1, 4))):
            w, h = (int(v) for v in rng.integers(size // 5, size // 2, 2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            colour = [int(c) for c in rng.integers(130, 256, 3)]
            if j % 2:
                outline = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)
            else:
                t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
                outline = np.stack((x + w / 2 + w / 2 * np.cos(t), y + h / 2 + h / 2 * np.sin(t)), 1).astype(np.float32)
            cv2.fillPoly(image, [np.round(outline).astype(np.int32)], colour)
            lines.append("0 " + " ".join(f"{v / size:.5f}" for v in outline.reshape(-1)))
        cv2.imwrite(str(folder / "images" / f"shape{k}.png"), image)
        (folder / "labels" / f"shape{k}.txt").write_text("\n".join(lines) + "\n")
    return folder


def tiny_config(data: Path | list[str], out: Path, **changes) -> TrainConfig:
    settings = dict(data=data if isinstance(data, list) else str(data), out=str(out), imgsz=64, batch=2, nominal_batch=2, epochs=3, warmup_epochs=0,
                    close_mosaic=1, val=False, workers=0, threads=1, seed=3, plots=False)
    settings.update(changes)
    return TrainConfig(**settings)


def test_smoke_training_loss_falls(tmp_path: Path) -> None:
    data = make_shapes_dataset(tmp_path / "shapes", count=4)
    # One step per epoch on the same four images (no augmentation): 12 AdamW steps.
    trainer = Trainer(tiny_config(data, tmp_path / "run", epochs=12, batch=4, nominal_batch=4, augment=False,
                                  optimizer="AdamW", lr0=0.002), progress=False)
    history = trainer.fit()
    losses = [row["train/loss"] for row in history]
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.75 * np.mean(losses[:2]), losses
    assert history[-1]["train/mask_loss"] < 0.5 * history[0]["train/mask_loss"]


@pytest.mark.parametrize("recipe", ["default", "weighted_sources_and_copy_paste"])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path: Path, recipe: str) -> None:
    data = make_shapes_dataset(tmp_path / "shapes", count=4)
    changes: dict = {}
    if recipe != "default":  # two sources, the second drawn 3x as often per image, and copy-paste
        other = make_shapes_dataset(tmp_path / "more", count=2, seed=1)
        data, changes = [str(data), f"{other}@3"], dict(hyp={"copy_paste": 0.5})
    straight = Trainer(tiny_config(data, tmp_path / "straight", **changes), progress=False)
    straight.fit()

    first = Trainer(tiny_config(data, tmp_path / "resumed", **changes), progress=False)
    first.fit(stop_after_epochs=1)  # "interrupted" after epoch 1 of 3
    del first
    if recipe == "default":  # a fork with no changes goes on exactly as the run would, leaving the run as it was
        forked = Trainer.resume(tmp_path / "resumed", progress=False, fork_to=tmp_path / "forked")
        forked.fit()
        for name, value in straight.model.state_dict().items():
            assert torch.equal(value, forked.model.state_dict()[name]), name
        assert torch.load(tmp_path / "resumed" / "weights" / "last.pt", weights_only=True)["epoch"] == 1
        assert json.loads((tmp_path / "forked" / "metrics.json").read_text())[0]["epoch"] == 1
    torch.manual_seed(1234)  # disturb the global RNG: resuming must restore it
    np.random.seed(1234)
    resumed = Trainer.resume(tmp_path / "resumed", progress=False)
    assert resumed.start_epoch == 1
    resumed.fit()

    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for name, value in straight.ema.module.state_dict().items():
        assert torch.equal(value, resumed.ema.module.state_dict()[name]), name
    assert [row["train/loss"] for row in straight.history] == [row["train/loss"] for row in resumed.history]


def test_run_folder_contents_load_safely_and_segment(tmp_path: Path) -> None:
    from fastsam.inference.predictor import Predictor
    from fastsam.model.zoo import load_model

    data = make_shapes_dataset(tmp_path / "shapes", count=2)
    run = tmp_path / "run"
    Trainer(tiny_config(data, run, epochs=1, plots=True, val=True, val_limit=1, val_max_det=5), progress=False).fit()
    state = torch.load(run / "weights" / "last.pt", weights_only=True)  # no code is unpickled
    assert state["epoch"] == 1 and state["config"]["imgsz"] == 64
    history = json.loads((run / "metrics.json").read_text())
    assert history[0]["epoch"] == 1 and "train/mask_loss" in history[0] and "val/mask/AP50" in history[0]
    assert (run / "metrics.csv").read_text().startswith("epoch,")
    assert (run / "plots.png").read_bytes()[:4] == b"\x89PNG"
    model = load_model(run / "weights" / "best.safetensors")
    result = Predictor(model, imgsz=64, conf=0.0, max_det=5)(data / "images" / "shape0.png")
    assert len(result) == 5


def test_fork_under_torchrun_is_copied_by_the_first_process_only(tmp_path: Path, monkeypatch) -> None:
    from fastsam.errors import CheckpointError
    from fastsam.train import trainer as trainer_module

    data = make_shapes_dataset(tmp_path / "shapes", count=2)
    Trainer(tiny_config(data, tmp_path / "run", epochs=1), progress=False).fit()
    trainer_module.fork_run(tmp_path / "run", tmp_path / "fork")  # what the first process does
    monkeypatch.setenv("RANK", "1")  # a later process reads the copy and copies nothing
    monkeypatch.setattr(trainer_module, "fork_run", lambda *a: pytest.fail("a second process copied the run"))
    forked = Trainer.resume(tmp_path / "run", progress=False, fork_to=tmp_path / "fork", epochs=2)
    assert forked.run_dir == tmp_path / "fork" and forked.start_epoch == 1
    with pytest.raises(CheckpointError, match="did not appear"):
        trainer_module._wait_for_file(tmp_path / "never" / "last.pt", timeout_s=0.1)


def test_fine_tune_keeps_the_checkpoint_architecture_across_resume(tmp_path: Path) -> None:
    from fastsam.model.checkpoint import save_native
    from fastsam.model.config import YoloV8SegConfig
    from fastsam.model.yolov8_seg import YoloV8Seg
    from fastsam.model.zoo import load_model

    torch.manual_seed(0)
    start = save_native(YoloV8Seg(YoloV8SegConfig.from_scale("n", reg_max=26)), tmp_path / "start.safetensors")
    data = make_shapes_dataset(tmp_path / "shapes", count=2)
    run = tmp_path / "run"
    Trainer(tiny_config(data, run, model=str(start), epochs=2), progress=False).fit(stop_after_epochs=1)
    resumed = Trainer.resume(run, progress=False)
    assert resumed.model.cfg.reg_max == 26
    resumed.fit()
    assert load_model(run / "weights" / "last.safetensors").cfg.reg_max == 26


def test_save_every_keeps_those_epochs_weights_and_may_change_on_resume(tmp_path: Path) -> None:
    from fastsam.model.zoo import load_model

    data = make_shapes_dataset(tmp_path / "shapes", count=2)
    run = tmp_path / "run"
    weights = run / "weights"
    Trainer(tiny_config(data, run, epochs=3, save_every=2), progress=False).fit(stop_after_epochs=2)
    assert sorted(p.name for p in weights.glob("epoch*")) == ["epoch2.safetensors"]
    after_two = (weights / "epoch2.safetensors").read_bytes()
    assert after_two == (weights / "last.safetensors").read_bytes()
    Trainer.resume(run, progress=False, save_every=1).fit()
    assert sorted(p.name for p in weights.glob("epoch*")) == ["epoch2.safetensors", "epoch3.safetensors"]
    assert (weights / "epoch2.safetensors").read_bytes() == after_two
    assert (weights / "epoch3.safetensors").read_bytes() == (weights / "last.safetensors").read_bytes() != after_two
    assert load_model(weights / "epoch2.safetensors").cfg.reg_max == 16


def test_run_continued_from_its_weights_follows_the_schedule(tmp_path: Path) -> None:
    """A run whose last.pt is lost goes on from its EMA weights at start_epoch: same epochs, learning rates,
    mosaic switch and EMA ramp as the uninterrupted run, with a fresh optimiser."""
    data = make_shapes_dataset(tmp_path / "shapes", count=4)
    def recording_mosaic(trainer: Trainer) -> list[bool]:
        used: list[bool] = []
        train_epoch = trainer._train_epoch_steps
        trainer._train_epoch_steps = lambda epoch: (train_epoch(epoch), used.append(trainer.dataset.mosaic))[0]
        return used

    straight = Trainer(tiny_config(data, tmp_path / "straight", epochs=4, close_mosaic=2, save_every=1),
                       progress=False)
    straight_mosaic = recording_mosaic(straight)
    straight.fit()

    continued = Trainer(tiny_config(data, tmp_path / "continued", epochs=4, close_mosaic=2, start_epoch=1,
                                    model=str(tmp_path / "straight" / "weights" / "epoch1.safetensors")),
                        progress=False)
    continued_mosaic = recording_mosaic(continued)
    assert continued.ema.updates == 2  # the 2 optimiser steps of epoch 1
    history = continued.fit()
    assert [row["epoch"] for row in history] == [2, 3, 4]
    assert [row["lr"] for row in history] == [row["lr"] for row in straight.history[1:]]
    assert straight_mosaic == [True, True, False, False] and continued_mosaic == straight_mosaic[1:]
    assert continued.ema.updates == straight.ema.updates == 8
    assert all(np.isfinite(row["train/loss"]) for row in history)
    assert Trainer.resume(tmp_path / "continued", progress=False).start_epoch == 4


def test_schedule_warms_up_again_from_its_first_iteration() -> None:
    from fastsam.train.optim import WarmupSchedule

    model = torch.nn.Conv2d(1, 1, 1)
    optimizer = torch.optim.SGD([{"params": [model.bias]}, {"params": [model.weight]}, {"params": []}], lr=0.1,
                                momentum=0.9)
    settings = dict(base_lr=0.1, epochs=10, lrf=0.1, cosine=False, warmup_iters=100, warmup_bias_lr=0.0,
                    warmup_momentum=0.8, momentum=0.9, accumulate=4)
    fresh, continued = WarmupSchedule(**settings), WarmupSchedule(**settings, first_iteration=500)
    assert continued.apply(optimizer, 500, 5) == 1 and optimizer.param_groups[1]["lr"] == 0.0
    assert continued.apply(optimizer, 550, 5) == fresh.apply(optimizer, 50, 5) == 2
    assert continued.apply(optimizer, 600, 5) == 4
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.1 * (0.5 * 0.9 + 0.1))
    fresh.apply(optimizer, 500, 5)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.1 * (0.5 * 0.9 + 0.1))


def test_config_rejects_bad_settings(tmp_path: Path) -> None:
    for bad in ({"imgsz": 100}, {"batch": 0}, {"optimizer": "Adam"}, {"scale": "q"}, {"lr0": -1.0},
                {"save_every": -1}, {"save_every": 1.5}, {"start_epoch": -1}, {"start_epoch": 3},
                {"start_epoch": True}):
        with pytest.raises(InvalidInputError):
            tiny_config(tmp_path, tmp_path / "run", **bad).check()
    with pytest.raises(InvalidInputError, match="cannot resume"):
        Trainer.resume(tmp_path / "nothing")


def test_train_cli_runs_and_resumes(tmp_path: Path) -> None:
    from fastsam.cli import main

    data = make_shapes_dataset(tmp_path / "shapes", count=2)
    run = tmp_path / "run"
    common = ["--imgsz", "64", "--batch", "2", "--nbs", "2", "--workers", "0", "--threads", "1", "--no-val", "--quiet"]
    assert main(["train", str(data), "--out", str(run), "--epochs", "1", "--hyp", "degrees=0", *common]) == 0
    machine = ["--workers", "0", "--threads", "1", "--quiet"]
    assert main(["train", "--resume", str(run), "--epochs", "2", "--save-every", "2", *machine]) == 0
    assert len(json.loads((run / "metrics.json").read_text())) == 2
    assert [p.name for p in (run / "weights").glob("epoch*")] == ["epoch2.safetensors"]
    # A fork goes on from the run's state with a changed recipe; the run itself stays at epoch 2.
    fork = tmp_path / "fork"
    assert main(["train", "--resume", str(run), "--fork", str(fork), "--epochs", "3", "--mask-margin", "0.1",
                 "--hyp", "fliplr=0", *machine]) == 0
    state = torch.load(fork / "weights" / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and state["config"]["mask_margin"] == 0.1 and state["config"]["out"] == str(fork)
    assert state["config"]["hyp"] == {"degrees": 0.0, "fliplr": 0.0}
    assert len(json.loads((fork / "metrics.json").read_text())) == 3
    assert torch.load(run / "weights" / "last.pt", weights_only=True)["epoch"] == 2
    assert main(["train", "--resume", str(run), "--mask-margin", "0.1", *machine]) == 2  # not in place
    assert main(["train", "--resume", str(run), "--fork", str(fork), *machine]) == 2  # fork holds a run already
    assert main(["train", "--resume", str(run), "--fork", str(run), *machine]) == 2
    assert main(["train", str(data), "--fork", str(fork), *common]) == 2  # --fork without --resume
    assert main(["train", "--imgsz", "64"]) == 2  # no data and no --resume
    assert main(["train", str(tmp_path / "missing"), "--out", str(run)]) == 2
    assert main(["train", str(data), "--out", str(tmp_path / "r2"), "--hyp", "bogus=1", *common]) == 2
    assert main(["train", str(data), "--out", str(tmp_path / "r2"), "--hyp", "scale", *common]) == 2
    assert main(["train", str(data), str(data), "--source-weights", "1", "--out", str(tmp_path / "r3"), *common]) == 2
    assert main(["train", str(data), "--bsds-annotator", "some", "--out", str(tmp_path / "r3"), *common]) == 2
    assert main(["train", str(data), "--save-every", "-2", "--out", str(tmp_path / "r3"), *common]) == 2
    # The run goes on from its weights alone, at the schedule's epoch 2 of 3.
    assert main(["train", str(data), "--model", str(run / "weights" / "last.safetensors"), "--start-epoch", "2",
                 "--epochs", "3", "--out", str(tmp_path / "r4"), *common]) == 0
    assert [row["epoch"] for row in json.loads((tmp_path / "r4" / "metrics.json").read_text())] == [3]
    assert main(["train", str(data), "--start-epoch", "3", "--epochs", "3", "--out", str(tmp_path / "r5"),
                 *common]) == 2
    # An explicit AdamW takes the bias warm-up start it is given (YOLOv8's 0.1 would move each bias 0.1 a step).
    assert main(["train", str(data), "--optimizer", "AdamW", "--lr0", "0.001", "--warmup-bias-lr", "0", "--epochs",
                 "1", "--out", str(tmp_path / "r6"), *common]) == 0
    adamw = Trainer.resume(tmp_path / "r6", progress=False)
    assert adamw.config.warmup_bias_lr == 0.0 and adamw.optim_settings.warmup_bias_lr == 0.0
    assert adamw.optim_settings.name == "AdamW" and adamw.optim_settings.lr == 0.001
    assert main(["train", str(data), "--warmup-bias-lr", "-0.1", "--out", str(tmp_path / "r7"), *common]) == 2


def test_source_weights_set_the_share_of_each_source(tmp_path: Path) -> None:
    small = make_shapes_dataset(tmp_path / "small", count=2)
    large = make_shapes_dataset(tmp_path / "large", count=8, seed=1)
    trainer = Trainer(tiny_config([f"{small}@4", str(large)], tmp_path / "run"), progress=False)
    assert trainer.config.source_weights == [4.0, 1.0]
    drawn = [i for epoch in range(5) for i in trainer._loader(epoch).sampler]
    assert len(drawn) == 5 * 10 and (np.array(drawn) < 2).mean() > 0.6  # 80% expected, 20% uniformly
    with pytest.raises(InvalidInputError, match="sampling weight"):
        tiny_config([str(small), str(large)], tmp_path / "run", source_weights=[1.0]).check()
