"""Named pretrained models: where they come from, where they are cached, and how they are fetched.

Downloads go to a ``.part`` file next to the destination and are moved into place only after the checksum
matches, so an interrupted or corrupted transfer never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import uuid
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from fastsam.errors import CheckpointError, InvalidInputError, ModelNotFoundError
from fastsam.model.checkpoint import load_weights, save_native
from fastsam.model.yolov8_seg import YoloV8Seg

_RELEASE = "https://github.com/ultralytics/assets/releases/download/v8.2.0"
_CHUNK = 1 << 20  # bytes per read while downloading and hashing
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation (connect, each read), not for the whole transfer


@dataclass(frozen=True)
class ZooModel:
    """A downloadable checkpoint. ``sha256`` None means unknown: the hash computed at download time is
    recorded in ``<file>.sha256`` beside the file and checked on later loads instead."""

    name: str
    url: str
    filename: str
    sha256: str | None
    size: int | None = None  # bytes, informative only


# Checksums are not published by Ultralytics next to the release assets; these values are the ones pinned
# independently by several public projects for these exact URLs (same size and hash in each).
MODELS: dict[str, ZooModel] = {
    "FastSAM-s": ZooModel(
        "FastSAM-s", f"{_RELEASE}/FastSAM-s.pt", "FastSAM-s.pt",
        "c9f78716a81c7aff0d608ccc73e1b82ab3aaad86005049f6a92106a0be6d0844", 23_851_578,
    ),
    "FastSAM-x": ZooModel(
        "FastSAM-x", f"{_RELEASE}/FastSAM-x.pt", "FastSAM-x.pt",
        "752cadc2828edb1cd4bc4f9eb587100631af06ea2108f4c9ed56df4755701e76", 144_972_346,
    ),
}


# Our own small model (YOLOv8n-seg trained with fastsam.train on ../shared/data; see fastsam/weights/README.md),
# shipped inside the package so that segmentation works offline before the official weights are fetched.
BUNDLED_NAME = "fastsam-default"
BUNDLED_PATH = Path(__file__).resolve().parent.parent / "weights" / "fastsam-default.safetensors"
AUTO = "auto"  # the best model at hand: official weights when cached (x before s), else the bundled one
_AUTO_ORDER = ("FastSAM-x", "FastSAM-s")
DEFAULT_CONF = 0.4  # FastSAM's confidence threshold
BUNDLED_CONF = 0.15  # the bundled model's scores run lower (small, briefly trained); see its model card
DEFAULT_IOU = 0.9  # FastSAM's NMS IoU threshold
BUNDLED_IOU = 0.7  # a small model leaves near-duplicate masks that 0.9 keeps; see its model card


def zoo_entry(name: str) -> ZooModel | None:
    """The zoo model called ``name`` (case-insensitive, optional trailing '.pt'), or None."""
    key = name.strip().lower()
    if key.endswith(".pt"):
        key = key[:-3]
    for entry in MODELS.values():
        if entry.name.lower() == key:
            return entry
    return None


def cache_dir() -> Path:
    """Folder of downloaded weights: ``$FASTSAM_CACHE``, else ``$XDG_CACHE_HOME/fastsam``, else
    ``~/.cache/fastsam``. Not created here."""
    if os.environ.get("FASTSAM_CACHE"):
        return Path(os.environ["FASTSAM_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "fastsam"
    return Path.home() / ".cache" / "fastsam"


def _offline() -> bool:
    return os.environ.get("FASTSAM_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _placement_help(url: str, dest: Path) -> str:
    return (f"download {url} on a machine with internet access and place it at {dest} "
            "(or pass the checkpoint's path instead of the model name)")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_sidecar(path: Path, digest: str) -> None:
    try:
        _sidecar(path).write_text(f"{digest}  {path.name}\n")
    except OSError:
        pass  # read-only cache: verification still works against a known hash, just not a recorded one


def _recorded_sha256(path: Path) -> str | None:
    try:
        text = _sidecar(path).read_text().split()
    except OSError:
        return None
    return text[0].lower() if text else None


def download(url: str, dest: str | Path, sha256: str | None = None, progress: bool = True,
             timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch ``url`` to ``dest`` atomically; verify ``sha256`` (hex) when given and record the file's hash in
    ``<dest>.sha256``. ``timeout`` is in seconds per socket operation.

    Raises :class:`ModelNotFoundError` when the transfer fails (with instructions for placing the file by hand)
    and :class:`CheckpointError` when the checksum does not match.
    """
    dest = Path(dest)
    # Unique name so concurrent downloads of the same model do not write into each other's file.
    part = dest.with_name(f"{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        out = part.open("xb")
    except OSError as exc:
        raise ModelNotFoundError(f"cannot write to {dest.parent}: {exc}; set FASTSAM_CACHE to a writable folder "
                                 f"or {_placement_help(url, dest)}") from exc
    digest = hashlib.sha256()
    try:
        with out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    received = 0
                    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                              disable=not progress, file=sys.stderr) as bar:
                        for chunk in iter(lambda: response.read(_CHUNK), b""):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise ModelNotFoundError(
                    f"could not download {dest.name} from {url} ({reason}); {_placement_help(url, dest)}"
                ) from exc
        if total is not None and received != total:
            raise ModelNotFoundError(f"download of {url} stopped after {received} of {total} bytes; "
                                     f"{_placement_help(url, dest)}")
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise CheckpointError(
                f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {actual}; the partial file "
                "was deleted (the download was corrupted or the published file changed)"
            )
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    _write_sidecar(dest, actual)
    return dest


_download = download  # resolve_weights' `download` flag shadows the function name


def _verify_cached(entry: ZooModel, path: Path) -> None:
    expected = entry.sha256 or _recorded_sha256(path)
    actual = sha256_file(path)
    if expected is None:
        _write_sidecar(path, actual)  # placed by hand with no known hash: trust it once, detect changes later
    elif actual != expected.lower():
        raise CheckpointError(
            f"cached {entry.name} at {path} is corrupt (sha256 {actual}, expected {expected.lower()}); delete it "
            f"to download it again, or fetch {entry.url} and put it there"
        )


def bundled_weights() -> Path:
    """The packaged default model's file (raises ModelNotFoundError when the installation lacks it)."""
    if not BUNDLED_PATH.is_file():
        raise ModelNotFoundError(f"the bundled model {BUNDLED_PATH} is missing from this installation; reinstall "
                                 "fastsam or pass --model FastSAM-s / FastSAM-x / a checkpoint path")
    return BUNDLED_PATH


def is_auto(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` asks for :func:`auto_model` (``auto``, any case and surrounding spaces)."""
    return str(name_or_path).strip().lower() == AUTO


def _model_name(name_or_path: str | Path) -> str:
    """``name_or_path`` as a model name: stripped, with ``auto`` replaced by what it means now."""
    return auto_model() if is_auto(name_or_path) else str(name_or_path).strip()


def is_bundled(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` (a name, ``auto`` or a file) means the bundled model."""
    if _model_name(name_or_path).lower() == BUNDLED_NAME:
        return True
    path = Path(name_or_path).expanduser()
    return path.is_file() and path.resolve() == BUNDLED_PATH.resolve()


def default_conf(name_or_path: str | Path) -> float:
    """The confidence threshold to use with a model when the user gives none: FastSAM's 0.4, or
    :data:`BUNDLED_CONF` for the bundled model (by name or by its file)."""
    return BUNDLED_CONF if is_bundled(name_or_path) else DEFAULT_CONF


def default_iou(name_or_path: str | Path) -> float:
    """The NMS IoU threshold to use with a model when the user gives none: FastSAM's 0.9, or
    :data:`BUNDLED_IOU` for the bundled model (by name or by its file)."""
    return BUNDLED_IOU if is_bundled(name_or_path) else DEFAULT_IOU


def model_thresholds(name_or_path: str | Path, conf: float | None = None, iou: float | None = None
                     ) -> tuple[float, float]:
    """``(conf, iou)`` to run a model at: those given, else the model's own (:func:`default_conf`,
    :func:`default_iou`). Every entry point that loads a model by name goes through here."""
    return (default_conf(name_or_path) if conf is None else conf,
            default_iou(name_or_path) if iou is None else iou)


def auto_model() -> str:
    """What ``model="auto"`` means now: the name of the largest official model already in the cache (never
    downloads), else :data:`BUNDLED_NAME`."""
    for name in _AUTO_ORDER:
        if (cache_dir() / MODELS[name].filename).is_file():
            return name
    return BUNDLED_NAME


def resolve_weights(name_or_path: str | Path, progress: bool = True, download: bool = True) -> Path:
    """Path of a checkpoint given as a file path, a zoo name ('FastSAM-s', 'fastsam-x.pt', ...), ``"auto"``
    (see :func:`auto_model`) or ``"fastsam-default"`` (the bundled model).

    An existing local path always wins. A zoo name resolves to the file in :func:`cache_dir`, downloaded if
    missing unless ``download`` is False or ``$FASTSAM_OFFLINE`` is set.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path  # load_weights reports a directory or unreadable file precisely
    name = _model_name(name_or_path)
    if name.lower() == BUNDLED_NAME:
        return bundled_weights()
    entry = zoo_entry(name) if path.name == str(name_or_path) else None
    if entry is None:
        raise ModelNotFoundError(
            f"no checkpoint file at {path}, and {str(name_or_path)!r} is not a model name; "
            f"known models: {', '.join([*MODELS, BUNDLED_NAME, AUTO])}"
        )
    dest = cache_dir() / entry.filename
    if dest.is_file():
        _verify_cached(entry, dest)
        return dest
    if not download or _offline():
        why = "FASTSAM_OFFLINE is set" if _offline() else "downloading is disabled"
        raise ModelNotFoundError(f"{entry.name} is not cached and {why}; {_placement_help(entry.url, dest)}")
    return _download(entry.url, dest, sha256=entry.sha256, progress=progress)


def load_model(name_or_path: str | Path, progress: bool = True) -> YoloV8Seg:
    """Load a zoo model (downloading it if needed) or a local ``.pt`` / ``.safetensors`` checkpoint, in eval
    mode on the CPU."""
    return load_weights(resolve_weights(name_or_path, progress=progress))


def convert_checkpoint(src: str | Path, dst: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Convert any supported checkpoint (path or zoo name) to fastsam's native safetensors file ``dst``, its
    floating-point weights stored as ``dtype`` (fp16 halves the file)."""
    source = resolve_weights(src)
    dst = Path(dst)
    if dst.exists() and dst.resolve() == source.resolve():
        raise InvalidInputError(f"conversion would overwrite its source {source}; choose another output path")
    return save_native(load_weights(source), dst, dtype)
