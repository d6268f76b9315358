"""Model zoo: name lookup, cache location, downloading (atomic, checksummed, offline-friendly) and reuse of cached
files. No test touches the internet: downloads come from file:// URLs or a server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
import urllib.error
from pathlib import Path
from typing import Iterator

import pytest
import torch

from fastsam.errors import CheckpointError, InvalidInputError, ModelNotFoundError
from fastsam.model import YoloV8Seg, YoloV8SegConfig, save_native, zoo
from fastsam.model.zoo import MODELS, cache_dir, convert_checkpoint, download, load_model, resolve_weights, zoo_entry

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("the network must not be used here")


def _leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.part")) if folder.exists() else []


@pytest.fixture
def payload_url(tmp_path: Path) -> str:
    source = tmp_path / "served" / "weights.bin"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    return source.as_uri()


@pytest.fixture
def use_entry(monkeypatch: pytest.MonkeyPatch):
    """Point zoo model 'FastSAM-s' at another URL / checksum for one test."""

    def use(url: str | None = None, sha256: str | None = None) -> zoo.ZooModel:
        entry = dataclasses.replace(MODELS["FastSAM-s"], url=url or MODELS["FastSAM-s"].url, sha256=sha256)
        monkeypatch.setitem(MODELS, "FastSAM-s", entry)
        return entry

    return use


class _Handler(http.server.BaseHTTPRequestHandler):
    stall: threading.Event

    def do_GET(self) -> None:
        if self.path == "/weights.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/truncated.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.close_connection = True
        elif self.path == "/stall.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:10])
            self.wfile.flush()
            self.stall.wait(10)
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    """Base URL of a local HTTP server serving PAYLOAD at /weights.bin plus broken variants."""
    stall = threading.Event()
    handler = type("Handler", (_Handler,), {"stall": stall})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stall.set()
        server.shutdown()
        server.server_close()


# --- names and cache ---------------------------------------------------------------------------------------------

def test_registry_entries() -> None:
    assert set(MODELS) == {"FastSAM-s", "FastSAM-x"}
    for name, entry in MODELS.items():
        assert entry.url == f"https://github.com/ultralytics/assets/releases/download/v8.2.0/{name}.pt"
        assert entry.filename == f"{name}.pt"
        assert entry.sha256 is None or (len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0)


@pytest.mark.parametrize("name, expected", [("FastSAM-s", "FastSAM-s"), ("fastsam-S.PT", "FastSAM-s"),
                                            ("FASTSAM-X", "FastSAM-x"), ("FastSAM-x.pt", "FastSAM-x"),
                                            ("FastSAM-m", None), ("yolov8n-seg", None)])
def test_name_lookup(name: str, expected: str | None) -> None:
    entry = zoo_entry(name)
    assert (entry.name if entry else None) == expected


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FASTSAM_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FASTSAM_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "fastsam"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "fastsam"


# --- resolving -----------------------------------------------------------------------------------------------------

def test_auto_prefers_cached_official_weights_then_the_bundled_model(
        model_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(zoo.urllib.request, "urlopen", _no_network)  # auto never downloads
    bundled = save_native(YoloV8Seg(YoloV8SegConfig.from_scale("n")),
                          tmp_path / "bundled.safetensors")
    monkeypatch.setattr(zoo, "BUNDLED_PATH", bundled)
    assert zoo.auto_model() == zoo.BUNDLED_NAME
    assert resolve_weights("auto") == resolve_weights("FastSAM-Default") == bundled
    # The bundled model's scores run lower: it brings its own confidence threshold, by name or by file.
    assert zoo.default_conf("auto") == zoo.default_conf("fastsam-default") == zoo.default_conf(bundled) == 0.15
    assert zoo.default_conf("FastSAM-x") == zoo.default_conf(tmp_path / "other.pt") == 0.4
    # ... and its own NMS IoU: it leaves near-duplicate masks that FastSAM's 0.9 would keep.
    assert zoo.default_iou("auto") == zoo.default_iou(" FastSAM-Default ") == zoo.default_iou(bundled) == 0.7
    assert zoo.default_iou("FastSAM-s") == zoo.default_iou(tmp_path / "other.pt") == 0.9
    # What every entry point runs a model at: the values given win, each one on its own.
    assert zoo.model_thresholds(bundled) == (0.15, 0.7)
    assert zoo.model_thresholds("FastSAM-x") == (0.4, 0.9)
    assert zoo.model_thresholds("fastsam-default", conf=0.3) == (0.3, 0.7)
    assert zoo.model_thresholds("fastsam-default", iou=0.5) == (0.15, 0.5)
    assert zoo.model_thresholds("FastSAM-s", conf=0.0, iou=0.0) == (0.0, 0.0)  # zero is a value, not "none"
    model_cache.mkdir(parents=True, exist_ok=True)
    for name in ("FastSAM-s", "FastSAM-x"):  # placed by hand, no known hash: trusted once
        monkeypatch.setitem(MODELS, name, dataclasses.replace(MODELS[name], sha256=None))
        (model_cache / MODELS[name].filename).write_bytes(name.encode())
        assert zoo.auto_model() == name
        assert resolve_weights("AUTO") == model_cache / MODELS[name].filename
    monkeypatch.setattr(zoo, "BUNDLED_PATH", tmp_path / "missing.safetensors")
    with pytest.raises(ModelNotFoundError, match="bundled model"):
        resolve_weights("fastsam-default")


def test_command_line_settings_default_per_model_and_yield_to_the_user() -> None:
    import argparse

    from fastsam.cli_options import add_inference_arguments, predictor_options

    parser = argparse.ArgumentParser()
    add_inference_arguments(parser)
    bundled = predictor_options(parser.parse_args(["--model", "fastsam-default"]))
    official = predictor_options(parser.parse_args(["--model", "FastSAM-x"]))
    assert (bundled["conf"], bundled["iou"]) == (zoo.BUNDLED_CONF, zoo.BUNDLED_IOU) == (0.15, 0.7)
    assert (official["conf"], official["iou"]) == (0.4, 0.9)
    chosen = predictor_options(parser.parse_args(["--model", "fastsam-default", "--iou", "0.9", "--conf", "0.3"]))
    assert (chosen["conf"], chosen["iou"]) == (0.3, 0.9)


def test_predictor_from_model_takes_the_model_s_own_settings(tmp_path: Path) -> None:
    from fastsam import Predictor

    bundled = Predictor.from_model("fastsam-default", imgsz=320)
    assert (bundled.conf, bundled.iou, bundled.imgsz) == (0.15, 0.7, 320)
    other = Predictor.from_model(save_native(YoloV8Seg(YoloV8SegConfig.from_scale("n")), tmp_path / "o.safetensors"))
    assert (other.conf, other.iou) == (0.4, 0.9)
    chosen = Predictor.from_model("fastsam-default", conf=0.3, iou=0.5)
    assert (chosen.conf, chosen.iou) == (0.3, 0.5)
    with pytest.raises(InvalidInputError, match="iou"):
        Predictor.from_model("fastsam-default", iou=1.5)


def test_the_bundled_model_ships_with_the_package() -> None:
    path = zoo.bundled_weights()
    assert path.stat().st_size <= 15 * 1024 * 1024
    model = load_model("fastsam-default")
    assert model.cfg.num_classes == 1 and model.cfg.num_masks == 32
    assert sum(p.numel() for p in model.parameters()) < 4_000_000  # a YOLOv8n-seg


def test_local_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_cache: Path) -> None:
    monkeypatch.setattr(zoo.urllib.request, "urlopen", _no_network)
    local = tmp_path / "FastSAM-s.pt"  # same name as a zoo model: the file is still used as is
    local.write_bytes(b"anything")
    assert resolve_weights(local) == local
    assert resolve_weights(str(local)) == local
    monkeypatch.chdir(tmp_path)
    assert resolve_weights("FastSAM-s.pt") == Path("FastSAM-s.pt")


def test_unknown_name_lists_models(model_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_weights("FastSAM-m")
    assert "FastSAM-s" in str(info.value) and "FastSAM-x" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="FastSAM-x"):
        resolve_weights("weights/missing.pt")


@pytest.mark.parametrize("how", ["env", "flag"])
def test_offline_explains_placement(how: str, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo.urllib.request, "urlopen", _no_network)
    if how == "env":
        monkeypatch.setenv("FASTSAM_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_weights("fastsam-x", download=how != "flag")
    message = str(info.value)
    assert str(model_cache / "FastSAM-x.pt") in message
    assert MODELS["FastSAM-x"].url in message


@pytest.mark.parametrize("error", [urllib.error.URLError("Name or service not known"), TimeoutError("timed out"),
                                   ConnectionResetError("reset")])
def test_network_failure_explains_placement(error: Exception, model_cache: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(zoo.urllib.request, "urlopen", fail)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_weights("FastSAM-s", progress=False)
    dest = model_cache / "FastSAM-s.pt"
    assert str(dest) in str(info.value) and MODELS["FastSAM-s"].url in str(info.value)
    assert not dest.exists() and not _leftovers(model_cache)


def test_zoo_name_downloads_then_reuses_cache(model_cache: Path, payload_url: str, use_entry,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry(url=payload_url, sha256=PAYLOAD_SHA)
    path = resolve_weights("FastSAM-s", progress=False)
    assert path == model_cache / "FastSAM-s.pt" and path.read_bytes() == PAYLOAD
    monkeypatch.setattr(zoo, "_download", _no_network)
    monkeypatch.setattr(zoo.urllib.request, "urlopen", _no_network)
    assert resolve_weights("fastsam-s.pt") == path


def test_cached_file_reused_and_later_corruption_detected(model_cache: Path, use_entry,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry(sha256=None)  # hash unknown: the first load records it
    monkeypatch.setattr(zoo, "_download", _no_network)
    monkeypatch.setattr(zoo.urllib.request, "urlopen", _no_network)
    cached = model_cache / "FastSAM-s.pt"
    model_cache.mkdir()
    cached.write_bytes(PAYLOAD)
    assert resolve_weights("FastSAM-s") == cached
    assert (model_cache / "FastSAM-s.pt.sha256").read_text().split()[0] == PAYLOAD_SHA
    assert resolve_weights("FastSAM-s") == cached
    cached.write_bytes(PAYLOAD[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match="corrupt"):
        resolve_weights("FastSAM-s")


def test_cached_file_with_wrong_known_hash(model_cache: Path, use_entry, monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry(sha256="0" * 64)
    monkeypatch.setattr(zoo, "_download", _no_network)
    model_cache.mkdir()
    (model_cache / "FastSAM-s.pt").write_bytes(PAYLOAD)
    with pytest.raises(CheckpointError, match="delete it"):
        resolve_weights("FastSAM-s")


# --- downloading ---------------------------------------------------------------------------------------------------

def test_download_file_url(tmp_path: Path, payload_url: str) -> None:
    dest = tmp_path / "out" / "w.pt"
    assert download(payload_url, dest, sha256=PAYLOAD_SHA, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert (tmp_path / "out" / "w.pt.sha256").read_text().split()[0] == PAYLOAD_SHA
    assert not _leftovers(dest.parent)


def test_download_wrong_checksum(tmp_path: Path, payload_url: str) -> None:
    dest = tmp_path / "out" / "w.pt"
    wrong = "ab" * 32
    with pytest.raises(CheckpointError) as info:
        download(payload_url, dest, sha256=wrong, progress=False)
    assert wrong in str(info.value) and PAYLOAD_SHA in str(info.value)
    assert not dest.exists() and not _leftovers(dest.parent)


def test_download_http_with_progress(tmp_path: Path, http_server: str, capsys: pytest.CaptureFixture) -> None:
    dest = tmp_path / "w.pt"
    download(f"{http_server}/weights.bin", dest, sha256=PAYLOAD_SHA.upper(), progress=True)
    assert dest.read_bytes() == PAYLOAD
    assert "w.pt" in capsys.readouterr().err  # the progress bar, on stderr


@pytest.mark.parametrize("path", ["/missing.bin", "/truncated.bin"])
def test_download_http_failures(tmp_path: Path, http_server: str, path: str) -> None:
    dest = tmp_path / "w.pt"
    with pytest.raises(ModelNotFoundError) as info:
        download(f"{http_server}{path}", dest, progress=False)
    assert str(dest) in str(info.value)
    assert not dest.exists() and not _leftovers(tmp_path)


def test_download_stalled_server_times_out(tmp_path: Path, http_server: str) -> None:
    dest = tmp_path / "w.pt"
    with pytest.raises(ModelNotFoundError):
        download(f"{http_server}/stall.bin", dest, progress=False, timeout=0.5)
    assert not dest.exists() and not _leftovers(tmp_path)


# --- loading and converting ----------------------------------------------------------------------------------------

@pytest.fixture
def native_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_native(YoloV8Seg(YoloV8SegConfig.from_scale("n")), tmp_path / "n.safetensors")


def test_load_model_from_path_and_cached_name(native_file: Path, model_cache: Path, use_entry,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(load_model(native_file), YoloV8Seg)
    use_entry(sha256=hashlib.sha256(native_file.read_bytes()).hexdigest())
    monkeypatch.setattr(zoo, "_download", _no_network)
    model_cache.mkdir()
    (model_cache / "FastSAM-s.pt").write_bytes(native_file.read_bytes())
    assert load_model("FastSAM-s", progress=False).cfg == YoloV8SegConfig.from_scale("n")


def test_convert_checkpoint(native_file: Path, tmp_path: Path) -> None:
    dest = convert_checkpoint(native_file, tmp_path / "copy.safetensors")
    assert torch.equal(load_model(dest).head.proto.cv1.conv.weight, load_model(native_file).head.proto.cv1.conv.weight)
    with pytest.raises(InvalidInputError, match="overwrite"):
        convert_checkpoint(native_file, native_file)


def test_convert_checkpoint_to_half_precision(native_file: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    half = convert_checkpoint(native_file, tmp_path / "half.safetensors", torch.float16)
    assert half.stat().st_size < 0.55 * native_file.stat().st_size
    with safe_open(str(half), framework="pt") as f:
        assert {f.get_slice(name).get_dtype() for name in f.keys()} >= {"F16"}
        assert "F32" not in {f.get_slice(name).get_dtype() for name in f.keys()}
    full, loaded = load_model(native_file), load_model(half)
    assert loaded.cfg == full.cfg
    for name, value in full.state_dict().items():  # back in fp32, each weight its fp16 rounding
        assert loaded.state_dict()[name].dtype == value.dtype
        if value.is_floating_point():
            assert torch.equal(loaded.state_dict()[name], value.half().float()), name
    with pytest.raises(InvalidInputError, match="dtype"):
        convert_checkpoint(native_file, tmp_path / "int.safetensors", torch.int8)
