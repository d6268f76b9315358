"""Checkpoint loading: malicious and malformed files are refused with CheckpointError (never run, never another
exception type); real ultralytics checkpoints load with the right architecture; the native format round-trips."""

from __future__ import annotations

import builtins
import collections
import functools
import json
import os
import pickle
import shlex
import struct
import subprocess
import sys
import types
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import save_file

from fastsam.errors import CheckpointError, UnsafeCheckpointError
from fastsam.model import YoloV8Seg, YoloV8SegConfig, load_weights, save_native
from fastsam.model.zoo import convert_checkpoint
from tests.paths import FIXTURES

REPO = Path(__file__).resolve().parents[1]


# --- helpers ---------------------------------------------------------------------------------------------------

def _fake_global(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> type:
    """A class that pickle records as ``module.name`` (e.g. an ultralytics class), without ultralytics installed."""
    cls = type(name, (), {"__module__": module, "__qualname__": name})
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        dotted = ".".join(parts[:i])
        if dotted not in sys.modules:
            monkeypatch.setitem(sys.modules, dotted, types.ModuleType(dotted))
    monkeypatch.setattr(sys.modules[module], name, cls, raising=False)
    return cls


def _fake_module(cls: type, **state: Any) -> Any:
    """An instance of ``cls`` pickled like an nn.Module: its __dict__ holds _parameters/_buffers/_modules."""
    obj = cls.__new__(cls)
    obj.__dict__.update({"_parameters": {}, "_buffers": {}, "_modules": {}, "training": False, **state})
    return obj


class _Reduce:
    """Pickles as ``func(*args)``: how a malicious checkpoint makes the loader call something."""

    def __init__(self, func: Callable, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, _Reduce]:
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": _Reduce(os.system, f"touch {shlex.quote(str(marker))}"),
        "builtins.eval": _Reduce(builtins.eval, touch),
        "builtins.exec": _Reduce(builtins.exec, touch),
    }


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _member_data_offset(path: Path, suffix: str) -> tuple[int, int]:
    """(offset, size) in bytes of the stored data of the zip member whose name ends with ``suffix``."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    with path.open("rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


@functools.lru_cache(maxsize=None)
def _fixture_model(name: str) -> YoloV8Seg:
    return load_weights(FIXTURES / name)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- malicious checkpoints -------------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "builtins.exec"])
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(_payloads(marker)[payload], path)
    with pytest.raises(UnsafeCheckpointError, match="not allowed"):
        load_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["next-to-model", "inside-model"])
def test_payload_hidden_in_plausible_checkpoint_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            where: str) -> None:
    marker = tmp_path / "pwned"
    seg_cls = _fake_global(monkeypatch, "ultralytics.nn.tasks", "SegmentationModel")
    evil = _payloads(marker)["os.system"]
    model = _fake_module(seg_cls, _parameters={"w": torch.nn.Parameter(torch.ones(2))})
    if where == "inside-model":
        model.__dict__["_modules"] = {"model": evil}
        checkpoint: dict[str, Any] = {"epoch": -1, "model": model}
    else:
        checkpoint = {"epoch": -1, "model": model, "train_args": {"data": "coco.yaml", "hook": evil}}
    path = tmp_path / "evil.pt"
    torch.save(checkpoint, path)
    with pytest.raises(UnsafeCheckpointError):
        load_weights(path)
    assert not marker.exists()


def test_getattr_on_non_stub_is_refused(tmp_path: Path) -> None:
    # getattr is allowed only on stub classes (ultralytics pickles method references that way).
    path = tmp_path / "gadget.pt"
    torch.save({"model": _Reduce(getattr, collections.OrderedDict, "fromkeys")}, path)
    with pytest.raises(UnsafeCheckpointError, match="getattr"):
        load_weights(path)


def test_plain_pickle_file_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.pt"
    path.write_bytes(pickle.dumps(_payloads(marker)["os.system"]))
    with pytest.raises(CheckpointError):
        load_weights(path)
    assert not marker.exists()


# --- malformed files -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ""])
def test_empty_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_weights(path)


@pytest.mark.parametrize("size", [1, 7, 8, 100, 100_000])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_random_bytes(tmp_path: Path, size: int, suffix: str) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_bytes(torch.randint(0, 256, (size,), generator=torch.Generator().manual_seed(size),
                                   dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError):
        load_weights(path)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="not a file"):
        load_weights(tmp_path)


def test_zip_without_data_pkl(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "other.pt", {"readme.txt": b"hello", "archive/version": b"3\n"})
    with pytest.raises(CheckpointError, match="data.pkl"):
        load_weights(path)


def test_zip_missing_tensor_data(tmp_path: Path) -> None:
    source = tmp_path / "full.pt"
    torch.save({"model": torch.arange(10.0)}, source)
    with zipfile.ZipFile(source) as archive:
        members = {n: archive.read(n) for n in archive.namelist() if "/data/" not in n}
    path = _write_zip(tmp_path / "stripped.pt", members)
    with pytest.raises(CheckpointError, match="lacks tensor data"):
        load_weights(path)


def test_state_dict_only_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save(YoloV8Seg(YoloV8SegConfig.from_scale("n")).state_dict(), path)
    with pytest.raises(CheckpointError, match="'model'"):
        load_weights(path)


def _truncations(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [data[:cut] for cut in (len(data) // 10, len(data) // 2, len(data) - 100, len(data) - 1)]


def test_truncated_synthetic_checkpoint(tmp_path: Path) -> None:
    source = tmp_path / "full.pt"
    torch.save({"model": torch.arange(5000.0), "epoch": 3}, source)
    for i, data in enumerate(_truncations(source)):
        path = tmp_path / f"cut{i}.pt"
        path.write_bytes(data)
        with pytest.raises(CheckpointError):
            load_weights(path)


def test_truncated_fixture_checkpoint(tmp_path: Path, shared_fixture: Callable[[str], Path]) -> None:
    for i, data in enumerate(_truncations(shared_fixture("fastsam-n26-parity.pt"))):
        path = tmp_path / f"cut{i}.pt"
        path.write_bytes(data)
        with pytest.raises(CheckpointError):
            load_weights(path)


def test_corrupted_tensor_bytes(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pt"
    torch.save({"model": torch.arange(5000.0)}, path)
    offset, size = _member_data_offset(path, "/data/0")
    data = bytearray(path.read_bytes())
    data[offset + size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_weights(path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS to contain the allocation")
def test_memo_index_bomb(tmp_path: Path) -> None:
    # Run in a child process with a 4 GiB address-space limit so a failure cannot take the test run down.
    path = _write_zip(tmp_path / "bomb.pt", {"archive/data.pkl": b"\x80\x02Nr" + struct.pack("<I", 0x7FFFFFF0) + b"."})
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "from fastsam.errors import CheckpointError\n"
        "from fastsam.model.checkpoint import load_weights\n"
        "try:\n    load_weights(sys.argv[1])\n"
        "except CheckpointError:\n    print('CheckpointError')\n"
        "except BaseException as exc:\n    print(type(exc).__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.stdout.strip() == "CheckpointError", done.stdout + done.stderr[-2000:]


def test_safetensors_with_bad_config_metadata(tmp_path: Path) -> None:
    model = YoloV8Seg(YoloV8SegConfig.from_scale("n"))
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"fastsam_config": "{not json"})
    with pytest.raises(CheckpointError):
        load_weights(path)


def test_safetensors_of_another_model(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(CheckpointError, match="YOLOv8-seg"):
        load_weights(path)


@pytest.mark.parametrize("task", ["DetectionModel", "ClassificationModel", "PoseModel"])
def test_non_segmentation_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str) -> None:
    cls = _fake_global(monkeypatch, "ultralytics.nn.tasks", task)
    conv = torch.nn.Conv2d(3, 16, 3)  # pickled as a torch.nn stub, as in real checkpoints
    path = tmp_path / "det.pt"
    torch.save({"model": _fake_module(cls, _modules={"model": conv}), "epoch": -1}, path)
    with pytest.raises(CheckpointError, match="segmentation"):
        load_weights(path)


# --- real checkpoints ------------------------------------------------------------------------------------------

FIXTURE_CASES = {
    # file: (widths, reg_max, parameters, tolerance)
    "fastsam-s-parity.pt": ((32, 64, 128, 256, 512), 16, 11.79e6, 0.01e6),
    "fastsam-n26-parity.pt": ((16, 32, 64, 128, 256), 26, 3.63e6, 0.01e6),
    "yolov8n-seg-coco128-ultralytics84.pt": ((16, 32, 64, 128, 256), 16, 3.26e6, 0.01e6),
}


@pytest.mark.parametrize("name", list(FIXTURE_CASES))
def test_fixture_checkpoint_config(name: str, shared_fixture: Callable[[str], Path]) -> None:
    shared_fixture(name)
    widths, reg_max, params, tolerance = FIXTURE_CASES[name]
    model = _fixture_model(name)
    assert model.cfg.widths == widths
    assert model.cfg.reg_max == reg_max
    assert model.cfg.num_classes == 1 and model.cfg.num_masks == 32
    assert _n_params(model) == pytest.approx(params, abs=tolerance)
    assert not model.training


@pytest.mark.parametrize("name", list(FIXTURE_CASES))
def test_fixture_checkpoint_forward(name: str, shared_fixture: Callable[[str], Path]) -> None:
    shared_fixture(name)
    model = _fixture_model(name)
    torch.manual_seed(0)
    with torch.no_grad():
        predictions, protos = model(torch.rand(1, 3, 256, 320))
    anchors = sum((256 // s) * (320 // s) for s in (8, 16, 32))
    assert predictions.shape == (1, 4 + model.cfg.num_classes + 32, anchors)
    assert protos.shape == (1, 32, 64, 80)
    assert torch.isfinite(predictions).all() and torch.isfinite(protos).all()


# --- native format ---------------------------------------------------------------------------------------------

def _assert_same_outputs(a: YoloV8Seg, b: YoloV8Seg) -> None:
    images = torch.rand(1, 3, 256, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for x, y in zip(a(images), b(images)):
            assert torch.equal(x, y)


def test_native_round_trip_random_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = YoloV8Seg(YoloV8SegConfig.from_scale("n", reg_max=20)).eval()
    for module in model.modules():  # non-trivial batch-norm statistics, so they must be saved too
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = save_native(model, tmp_path / "n.safetensors")
    loaded = load_weights(path)
    assert loaded.cfg == model.cfg
    _assert_same_outputs(model, loaded)


def test_native_round_trip_fixture(tmp_path: Path, shared_fixture: Callable[[str], Path]) -> None:
    source = shared_fixture("fastsam-s-parity.pt")
    dest = convert_checkpoint(source, tmp_path / "s.safetensors")
    assert dest == tmp_path / "s.safetensors"
    loaded = load_weights(dest)
    assert loaded.cfg == _fixture_model(source.name).cfg
    _assert_same_outputs(_fixture_model(source.name), loaded)


def test_native_config_read_from_json_sidecar(tmp_path: Path) -> None:
    model = YoloV8Seg(YoloV8SegConfig.from_scale("n", reg_max=26)).eval()
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))  # no metadata
    assert load_weights(path).cfg.reg_max == 26  # inferred from the weights
    path.with_suffix(".json").write_text(json.dumps(dict(model.cfg.to_dict(), bn_eps=1e-5)))
    assert load_weights(path).cfg.bn_eps == 1e-5


# --- architecture ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale, params", [("n", 3.41e6), ("s", 11.82e6), ("m", 27.3e6), ("l", 46.0e6),
                                           ("x", 71.8e6)])
def test_scale_parameter_counts(scale: str, params: float) -> None:
    # Published YOLOv8-seg parameter counts (COCO, 80 classes).
    model = YoloV8Seg(YoloV8SegConfig.from_scale(scale, num_classes=80))
    assert _n_params(model) == pytest.approx(params, rel=0.01)


# --- per-layer batch-norm eps ----------------------------------------------------------------------------------

#: A YOLOv8-seg far narrower than the n scale (63k parameters): the whole loading path in a fraction of the time.
SMALL_CONFIG = YoloV8SegConfig(widths=(8, 8, 16, 16, 16), depths=(1, 1, 1, 1), neck_depth=1, reg_max=4, num_masks=8,
                               proto_channels=8)


def _mixed_eps_model() -> YoloV8Seg:
    """A small YOLOv8-seg whose box-branch batch norms use eps 1e-5 and the others 1e-3 (as in FastSAM-x's
    checkpoints), with batch-norm statistics small enough for eps to matter."""
    torch.manual_seed(0)
    model = YoloV8Seg(SMALL_CONFIG).eval()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d) and name.startswith("head.box_convs."):
            module.running_var.uniform_(1e-5, 1e-4)
            module.eps = 1e-5
    return model


def _batch_norm_eps(model: torch.nn.Module) -> dict[str, float]:
    return {n: m.eps for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}


_SMALL_IMAGES = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))


def _predictions(model: YoloV8Seg) -> torch.Tensor:
    with torch.no_grad():
        return model(_SMALL_IMAGES)[0]


def _infer_config_from(model: YoloV8Seg) -> YoloV8SegConfig:
    from fastsam.model.config import infer_config

    return infer_config(model.state_dict(), bn_eps=_batch_norm_eps(model))


def _as_ultralytics(model: YoloV8Seg, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``model`` pickled in ultralytics' layout: SegmentationModel.model[N] holding torch.nn leaf modules."""
    from fastsam.model.yolov8_seg import _HEAD_BRANCHES, ULTRALYTICS_LAYER_NAMES

    layers = {name: str(index) for index, name in ULTRALYTICS_LAYER_NAMES.items()}
    branches = {v: k for k, v in _HEAD_BRANCHES.items()}
    root = torch.nn.Module()
    for name, leaf in model.named_modules():
        if not isinstance(leaf, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ConvTranspose2d)):
            continue
        layer = next(layer for layer in layers if name.startswith(layer + "."))
        path = [layers[layer]] + name[len(layer) + 1:].split(".")
        if layer == "head":
            path[1] = branches.get(path[1], path[1])
        parent = root
        for part in path[:-1]:
            if part not in parent._modules:
                parent.add_module(part, torch.nn.Module())
            parent = parent._modules[part]
        parent.add_module(path[-1], leaf)
    seg_cls = _fake_global(monkeypatch, "ultralytics.nn.tasks", "SegmentationModel")
    return {"epoch": -1, "model": _fake_module(seg_cls, _modules={"model": root})}


def test_per_layer_eps_loaded_from_ultralytics_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _mixed_eps_model()
    path = tmp_path / "mixed.pt"
    torch.save(_as_ultralytics(source, monkeypatch), path)
    loaded = load_weights(path)
    assert _batch_norm_eps(loaded) == _batch_norm_eps(source)
    assert loaded.cfg.bn_eps == 1e-3 and {eps for _, eps in loaded.cfg.layer_bn_eps} == {1e-5}
    assert torch.equal(_predictions(loaded), _predictions(source))


def test_per_layer_eps_changes_outputs_and_survives_native_round_trip(tmp_path: Path) -> None:
    source = _mixed_eps_model()
    one_eps = YoloV8Seg(SMALL_CONFIG).eval()
    one_eps.load_state_dict(source.state_dict())
    expected = _predictions(source)
    assert not torch.allclose(_predictions(one_eps), expected, atol=1e-2)  # so the checks below can fail
    mixed_cfg = _infer_config_from(source)
    assert dict(mixed_cfg.layer_bn_eps) == {n: 1e-5 for n, eps in _batch_norm_eps(source).items() if eps == 1e-5}
    model = YoloV8Seg(mixed_cfg).eval()
    model.load_state_dict(source.state_dict())
    loaded = load_weights(save_native(model, tmp_path / "mixed.safetensors"))
    assert loaded.cfg == model.cfg
    assert _batch_norm_eps(loaded) == _batch_norm_eps(source)
    assert torch.equal(_predictions(loaded), expected)
    # Folding batch norms into convolutions uses each layer's own eps.
    torch.testing.assert_close(_predictions(loaded.fuse()), expected, rtol=1e-4, atol=1e-3)


def test_fixture_box_branch_eps(shared_fixture: Callable[[str], Path], tmp_path: Path) -> None:
    # The n26 fixture's box-branch batch norms (model.22.cv2.*.*.bn) have eps 1e-5, all others 1e-3.
    source = shared_fixture("fastsam-n26-parity.pt")
    model = _fixture_model(source.name)
    for name, eps in _batch_norm_eps(model).items():
        assert eps == (1e-5 if name.startswith("head.box_convs.") else 1e-3), name
    native = load_weights(convert_checkpoint(source, tmp_path / "n26.safetensors"))
    assert _batch_norm_eps(native) == _batch_norm_eps(model)


@pytest.mark.parametrize("layer_eps", [{"head.box_convs.0.0.conv": 1e-5}, {"no.such.layer": 1e-5},
                                       {"head.box_convs.0.0.bn": -1.0}, {"head.box_convs.0.0.bn": "x"}])
def test_bad_per_layer_eps_in_native_config(tmp_path: Path, layer_eps: dict) -> None:
    model = YoloV8Seg(YoloV8SegConfig.from_scale("n")).eval()
    path = tmp_path / "bad.safetensors"
    config = dict(model.cfg.to_dict(), layer_bn_eps=layer_eps)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"fastsam_config": json.dumps(config)})
    with pytest.raises(CheckpointError, match="eps|config"):
        load_weights(path)


# --- zip bombs -------------------------------------------------------------------------------------------------

def _rezip(source: Path, dest: Path, replace: dict[str, bytes]) -> Path:
    """``source``'s members, those whose name ends with a key of ``replace`` swapped for its (deflated) bytes."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(dest, "w") as out:
        for name in archive.namelist():
            new = next((data for suffix, data in replace.items() if name.endswith(suffix)), None)
            if new is None:
                out.writestr(name, archive.read(name), zipfile.ZIP_STORED)
            else:
                out.writestr(name, new, zipfile.ZIP_DEFLATED)
    return dest


def test_tensor_member_inflating_beyond_its_tensor_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "small.pt"
    torch.save({"model": torch.arange(1000.0)}, source)  # the pickle says 4000 bytes
    bomb = _rezip(source, tmp_path / "bomb.pt", {"/data/0": bytes(64 << 20)})
    assert bomb.stat().st_size < 200_000
    with pytest.raises(UnsafeCheckpointError, match="declares 67108864 bytes but its tensor needs 4000"):
        load_weights(bomb)


def test_oversized_pickle_is_refused_unread(tmp_path: Path) -> None:
    from fastsam.model.safe_pickle import MAX_PICKLE_BYTES

    source = tmp_path / "small.pt"
    torch.save({"model": torch.arange(10.0)}, source)
    bomb = _rezip(source, tmp_path / "bomb.pt", {"data.pkl": b"(" * (MAX_PICKLE_BYTES + 1)})
    with pytest.raises(UnsafeCheckpointError, match="zip bomb"):
        load_weights(bomb)


def test_tensors_beyond_the_total_limit_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastsam.model import safe_pickle

    path = tmp_path / "big.pt"
    torch.save({"model": [torch.zeros(100_000), torch.zeros(100_000)]}, path)  # 800 kB in all
    monkeypatch.setattr(safe_pickle, "MAX_TENSOR_BYTES", 600_000)
    with pytest.raises(UnsafeCheckpointError, match="all tensors together"):
        load_weights(path)


def test_tensor_larger_than_its_storage_is_refused(tmp_path: Path) -> None:
    # Stride 0 would let 4 bytes pose as a 10^12-element weight, from which a huge network would be built.
    path = tmp_path / "strided.pt"
    torch.save({"model": torch.zeros(1).expand(1_000_000, 1_000_000)}, path)
    with pytest.raises(CheckpointError, match="more elements than its storage"):
        load_weights(path)


def test_config_asking_for_a_huge_network_is_refused_before_building_it(tmp_path: Path) -> None:
    model = YoloV8Seg(YoloV8SegConfig.from_scale("n")).eval()
    path = tmp_path / "huge.safetensors"
    config = dict(model.cfg.to_dict(), widths=[16, 32, 64, 128, 1 << 20])  # P5 weights of 10^13 parameters
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"fastsam_config": json.dumps(config)})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_weights(path)
