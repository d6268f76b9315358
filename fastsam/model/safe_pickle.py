"""Reading PyTorch zip checkpoints without executing anything they contain.

A ``torch.save`` file is a zip archive holding ``<root>/data.pkl`` (a pickle) and one file per tensor storage
under ``<root>/data/``. A pickle can name any importable callable and make the reader call it, which is how a
malicious ``.pt`` runs ``os.system``. This reader never imports a module named by the file:

* tensor reconstruction and a few plain containers map to functions written here;
* classes from the modules that legitimately appear in YOLOv8 checkpoints (``ultralytics.*``,
  ``torch.nn.modules.*``) become inert :class:`StubObject` records of their pickled state;
* everything else raises :class:`~fastsam.errors.UnsafeCheckpointError` before anything is called.

Sizes are checked before anything is inflated, so a small file cannot make the reader allocate gigabytes (a zip
bomb): ``data.pkl`` is capped at :data:`MAX_PICKLE_BYTES`, each tensor member must declare exactly the bytes its
storage needs (numel x itemsize), and all storages together stay under :data:`MAX_TENSOR_BYTES`.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from fastsam.errors import CheckpointError, UnsafeCheckpointError

# Module prefixes whose classes are recorded as stubs. Nothing from them is imported.
STUB_MODULE_PREFIXES = ("ultralytics.", "torch.nn.modules.", "models.")

#: Largest ``data.pkl`` read, in bytes. YOLOv8 checkpoints hold 0.1-0.3 MB of pickle (their tensors are separate
#: members); the pure-Python unpickler needs about a second and 75 MB per megabyte of the worst opcodes, so a larger
#: one is refused unread.
MAX_PICKLE_BYTES = 4 << 20
#: Largest total of tensor storage, in bytes (YOLOv8x-seg in fp32 needs about 0.3 GB).
MAX_TENSOR_BYTES = 2 << 30

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "HalfStorage": torch.float16,
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class StubObject:
    """Inert stand-in for an object of a class the reader refused to import.

    ``qualname`` is the pickled ``module.Class`` name, ``args`` what the pickle passed to its constructor and
    ``state`` what it passed to ``__setstate__`` (for ``nn.Module`` subclasses, the instance ``__dict__``).
    """

    qualname: str = "?"

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stub {self.qualname}>"


class StubAttribute:
    """What ``getattr(StubClass, name)`` returns: a record of the reference, never the real attribute."""

    def __init__(self, owner: str, name: str) -> None:
        self.owner = owner
        self.name = name

    def __repr__(self) -> str:
        return f"<stub attribute {self.owner}.{self.name}>"


def _stub_class(module: str, name: str) -> type:
    return type(name, (StubObject,), {"qualname": f"{module}.{name}", "__module__": "fastsam.stub"})


def _safe_getattr(obj: Any, name: str, *default: Any) -> StubAttribute:
    # ultralytics pickles `Segment.detect = Detect.forward` as getattr(Detect, "forward"); allow only that shape.
    if isinstance(obj, type) and issubclass(obj, StubObject) and isinstance(name, str):
        return StubAttribute(obj.qualname, name)
    raise UnsafeCheckpointError(f"checkpoint pickle calls getattr on {type(obj).__name__!r}; refused")


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise UnsafeCheckpointError("tensor rebuilt from something that is not a storage")
    if len(size) == 0:
        return storage[offset].clone()
    needed = offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1
    if any(s == 0 for s in size):
        return storage.new_empty(tuple(size))
    if needed > storage.numel() or offset < 0 or any(st < 0 for st in stride):
        raise CheckpointError("checkpoint tensor points outside its storage (file corrupt?)")
    if math.prod(size) > storage.numel() - offset:
        # Overlapping strides (e.g. 0) would let a few bytes pose as a huge weight, and a huge network be built.
        raise CheckpointError("checkpoint tensor has more elements than its storage (file corrupt?)")
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, *_: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise UnsafeCheckpointError("parameter rebuilt from something that is not a tensor")
    return data


def _rebuild_from_type_v2(func: Callable, new_type: Any, args: tuple, state: Any) -> Any:
    if func not in (_rebuild_tensor, _rebuild_parameter):
        raise UnsafeCheckpointError("checkpoint asks to rebuild a tensor with a function outside the allow-list")
    return func(*args)


def _torch_size(*args: Any) -> tuple:
    return tuple(*args) if args else ()


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Size"): _torch_size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "getattr"): _safe_getattr,
    ("builtins", "getattr"): _safe_getattr,
}


# The pure-Python unpickler keeps its memo in a dict; the C one sizes an array from the file's memo indices, so
# a 16-byte pickle can make it allocate gigabytes.
class _RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    def __init__(self, file: io.BytesIO, load_storage: Callable[[torch.dtype, str, int], torch.Tensor]) -> None:
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        safe = _SAFE_GLOBALS.get((module, name))
        if safe is not None:
            return safe
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in ("float16", "float32", "bfloat16", "float64"):
            return getattr(torch, name)
        if module.startswith(STUB_MODULE_PREFIXES) and name.isidentifier():
            return _stub_class(module, name)
        raise UnsafeCheckpointError(
            f"checkpoint refers to '{module}.{name}', which is not allowed in a model file; "
            "it was refused and nothing from it ran"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unsupported persistent id in checkpoint: {pid!r:.80}")
        storage_type, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
        if isinstance(storage_type, _StorageType):
            dtype = storage_type.dtype
        elif isinstance(storage_type, torch.dtype):
            dtype = storage_type
        else:
            raise UnsafeCheckpointError("unsupported storage type in checkpoint")
        return self._load_storage(dtype, str(key), int(numel))


def load_torch_zip(path: str | Path) -> Any:
    """Read a ``torch.save`` zip file into plain Python objects, tensors and :class:`StubObject` records.

    Raises :class:`CheckpointError` for unreadable files and :class:`UnsafeCheckpointError` for pickles that
    reference anything outside the allow-list.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (not a zip archive; legacy pre-1.6 torch files are not supported)"
        ) from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    try:
        with archive:
            return _read_archive(archive, path)
    except CheckpointError:
        raise
    except RecursionError as exc:
        raise CheckpointError(f"checkpoint {path} is nested too deeply to read") from exc
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib and the unpickler raise many types on bad bytes
        raise CheckpointError(f"checkpoint {path} is corrupt: {type(exc).__name__}: {exc}") from exc


def _refuse_bomb(path: Path, info: zipfile.ZipInfo, needed: int, what: str) -> None:
    raise UnsafeCheckpointError(
        f"checkpoint {path}: member {info.filename} declares {info.file_size} bytes but {what} {needed}; a file "
        "that inflates beyond what it holds (a zip bomb) is refused unread"
    )


def _read_archive(archive: zipfile.ZipFile, path: Path) -> Any:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
        raise CheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl)")
    root = pickles[0][: -len("data.pkl")]
    pickle_info = archive.getinfo(pickles[0])
    if pickle_info.file_size > MAX_PICKLE_BYTES:
        _refuse_bomb(path, pickle_info, MAX_PICKLE_BYTES, "the limit for a model's pickle is")
    with archive.open(pickle_info) as member:
        pickle_bytes = member.read(MAX_PICKLE_BYTES + 1)
    if len(pickle_bytes) > MAX_PICKLE_BYTES:
        _refuse_bomb(path, pickle_info, MAX_PICKLE_BYTES, "the limit for a model's pickle is")
    cache: dict[str, torch.Tensor] = {}
    total = 0

    def load_storage(dtype: torch.dtype, key: str, numel: int) -> torch.Tensor:
        nonlocal total
        if key not in cache:
            member = f"{root}data/{key}"
            try:
                info = archive.getinfo(member)
            except KeyError as exc:
                raise CheckpointError(f"checkpoint {path} lacks tensor data {member}") from exc
            needed = numel * torch.empty((), dtype=dtype).element_size()
            if numel < 0 or info.file_size < needed:
                raise CheckpointError(f"checkpoint {path} is truncated (tensor data {member} too short)")
            if info.file_size > needed:
                _refuse_bomb(path, info, needed, "its tensor needs")
            total += needed
            if total > MAX_TENSOR_BYTES:
                _refuse_bomb(path, info, MAX_TENSOR_BYTES, "all tensors together may take at most")
            raw = archive.read(info)
            if len(raw) != needed:
                raise CheckpointError(f"checkpoint {path} is truncated (tensor data {member} too short)")
            storage = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            cache[key] = storage.view(dtype)
        return cache[key]

    return _RestrictedUnpickler(io.BytesIO(pickle_bytes), load_storage).load()
