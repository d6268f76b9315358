"""Loading and saving model weights: ultralytics ``.pt`` pickles (read safely) and fastsam's native
safetensors + JSON config format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from fastsam.errors import CheckpointError, InvalidInputError
from fastsam.io.atomic import atomic_write_bytes
from fastsam.model.config import YoloV8SegConfig, infer_config
from fastsam.model.safe_pickle import StubObject, load_torch_zip
from fastsam.model.yolov8_seg import YoloV8Seg, rename_ultralytics_key

CONFIG_METADATA_KEY = "fastsam_config"

_MAX_MODULE_DEPTH = 16  # YOLOv8 nests modules 6 deep; a deeper tree is a corrupt or hostile file


def _module_state(module: StubObject, prefix: str, out: dict[str, torch.Tensor], eps: dict[str, float],
                  depth: int = 0) -> None:
    """Collect the tensors under ``module`` into ``out`` and each batch norm's epsilon into ``eps``, both keyed
    by their ultralytics path (``model.22.cv2.0.0.bn.weight``, ``model.22.cv2.0.0.bn``)."""
    if depth > _MAX_MODULE_DEPTH:
        raise CheckpointError(f"checkpoint modules are nested more than {_MAX_MODULE_DEPTH} deep at {prefix!r}")
    state = module.state if isinstance(module.state, dict) else {}

    def entries(group: str) -> list[tuple[Any, Any]]:
        items = state.get(group)
        return list(items.items()) if isinstance(items, dict) else []

    for group in ("_parameters", "_buffers"):
        for name, tensor in entries(group):
            if isinstance(tensor, torch.Tensor):
                out[f"{prefix}{name}"] = tensor
    if module.qualname.endswith("BatchNorm2d") and isinstance(state.get("eps"), float):
        eps[prefix.rstrip(".")] = state["eps"]
    for name, child in entries("_modules"):
        if isinstance(child, StubObject):
            _module_state(child, f"{prefix}{name}.", out, eps, depth + 1)

def _ultralytics_model(checkpoint: Any, path: Path) -> StubObject:
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} does not hold an ultralytics checkpoint dict")
    for key in ("ema", "model"):
        model = checkpoint.get(key)
        if isinstance(model, StubObject):
            if not model.qualname.endswith("SegmentationModel"):
                raise CheckpointError(
                    f"{path} holds a {model.qualname.rsplit('.', 1)[-1]}, not a segmentation model; FastSAM needs "
                    "a YOLOv8-seg (SegmentationModel) checkpoint"
                )
            return model
    raise CheckpointError(f"{path} has no 'model' or 'ema' entry holding a network")

def state_from_ultralytics(path: str | Path) -> tuple[dict[str, torch.Tensor], YoloV8SegConfig]:
    """Read an ultralytics YOLOv8-seg checkpoint (8.0.x or later, fp16 or fp32) without executing it.

    Returns fp32 weights named as in :class:`YoloV8Seg` and the architecture inferred from them.
    """
    path = Path(path)
    model = _ultralytics_model(load_torch_zip(path), path)
    raw: dict[str, torch.Tensor] = {}
    eps: dict[str, float] = {}
    _module_state(model, "", raw, eps)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        try:
            name = rename_ultralytics_key(key)
        except KeyError:
            raise CheckpointError(
                f"{path}: unexpected weight {key!r}; only the YOLOv8-seg architecture (as in FastSAM) is supported"
            ) from None
        if name is not None:
            state[name] = tensor.float() if tensor.is_floating_point() else tensor
    return state, infer_config(state, bn_eps=_renamed_eps(eps, path))


def _renamed_eps(eps: dict[str, float], path: Path) -> dict[str, float]:
    """Per-layer batch-norm epsilons keyed by fastsam's module paths (those of weights fastsam keeps)."""
    renamed: dict[str, float] = {}
    for layer, value in eps.items():
        try:
            name = rename_ultralytics_key(f"{layer}.weight")
        except KeyError:
            raise CheckpointError(f"{path}: unexpected batch norm {layer!r}; only the YOLOv8-seg architecture "
                                  "is supported") from None
        if name is not None:
            renamed[name.rsplit(".", 1)[0]] = value
    return renamed

def build_model(state: dict[str, torch.Tensor], cfg: YoloV8SegConfig, source: str = "weights") -> YoloV8Seg:
    """Instantiate :class:`YoloV8Seg` and load ``state`` strictly (every weight present with its shape)."""
    try:
        # Shapes first, on the meta device (no memory): a corrupt config could otherwise ask for a huge network.
        with torch.device("meta"):
            expected = YoloV8Seg(cfg).state_dict()
    except InvalidInputError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        detail = (missing and f"missing {missing[:3]}") or (unexpected and f"unexpected {unexpected[:3]}") or (
            f"shape mismatch at {wrong[:3]}"
        )
        raise CheckpointError(f"{source} do not form a YOLOv8-seg network: {detail}")
    model = YoloV8Seg(cfg)
    model.load_state_dict(state)
    return model.eval()


#: Floating-point types a native file may store: fp32 (exact) or half width (half the size; loads back into fp32).
NATIVE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def native_bytes(model: YoloV8Seg, dtype: torch.dtype = torch.float32) -> bytes:
    """The safetensors file :func:`save_native` writes, as bytes (floating-point tensors as ``dtype``, the
    architecture config in the metadata)."""
    if dtype not in NATIVE_DTYPES:
        raise InvalidInputError(f"dtype must be one of {NATIVE_DTYPES}, got {dtype}")
    tensors = {k: v.detach().to(dtype).contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in model.state_dict().items()}
    return save(tensors, metadata={CONFIG_METADATA_KEY: json.dumps(model.cfg.to_dict())})


def save_native(model: YoloV8Seg, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write :func:`native_bytes` to ``path`` atomically (readers never see a partial file); returns the path."""
    return atomic_write_bytes(path, native_bytes(model, dtype))


def load_native(path: str | Path) -> tuple[dict[str, torch.Tensor], YoloV8SegConfig]:
    """Read a safetensors file written by :func:`save_native`. The config comes from the file's metadata, or
    from a ``.json`` file beside it, or is inferred from the weights."""
    path = Path(path)
    try:
        state = load_file(str(path))

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read safetensors file {path}: {exc}") from exc
    try:
        if CONFIG_METADATA_KEY in metadata:
            cfg = YoloV8SegConfig.from_dict(json.loads(metadata[CONFIG_METADATA_KEY]))
        elif path.with_suffix(".json").is_file():
            cfg = YoloV8SegConfig.from_dict(json.loads(path.with_suffix(".json").read_text()))
        else:
            cfg = infer_config(state)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: the model config is not valid JSON ({exc})") from exc
    return state, cfg

def load_weights(path: str | Path) -> YoloV8Seg:
    """Load a model from an ultralytics ``.pt`` or a fastsam ``.safetensors`` file, never executing its code."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    with path.open("rb") as f:
        magic = f.read(9)
    if magic[:2] != b"PK" and magic[8:9] != b"{":  # safetensors: an 8-byte header length, then the JSON header
        raise CheckpointError(f"{path} is neither a PyTorch (.pt) nor a safetensors checkpoint")
    try:
        state, cfg = state_from_ultralytics(path) if magic[:2] == b"PK" else load_native(path)
        return build_model(state, cfg, source=str(path))
    except CheckpointError:
        raise
    except (InvalidInputError, IndexError, ValueError, TypeError, RuntimeError) as exc:
        # Weights whose shapes or values make no network (a corrupt file, or one of another architecture).
        raise CheckpointError(f"{path} does not hold a usable YOLOv8-seg network: {exc}") from exc
