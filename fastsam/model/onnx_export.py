"""Export :class:`YoloV8Seg` to ONNX and quantize the result to int8 for onnxruntime.

The exported graph is the whole eval-mode network, box decoding included: input ``images`` (B, 3, H, W) float
RGB in [0, 1] with B, H and W dynamic (H, W multiples of 32), outputs ``predictions`` (B, 4 + nc + nm, A) and
``protos`` (B, nm, H/4, W/4), exactly what :class:`fastsam.inference.predictor.Backend` expects. The anchor grid
is computed from the feature-map shapes inside the graph, so one file serves every input size. The model
config travels in the file's ``metadata_props`` (``fastsam_config``, JSON) so a backend knows ``num_classes``.

Needs the optional dependencies ``onnx`` (export) and ``onnxruntime`` (verification and quantization):
``pip install "fastsam-torch[onnx]"``.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from fastsam.errors import CheckpointError, FastSAMError, InvalidInputError
from fastsam.extras import EXTRA_PACKAGES, install_hint
from fastsam.model.yolov8_seg import YoloV8Seg

INPUT_NAME = "images"
OUTPUT_NAMES = ("predictions", "protos")
CONFIG_KEY = "fastsam_config"
FORMAT_KEY = "fastsam_onnx_format"
FORMAT_VERSION = "1"
QUANT_KEY = "fastsam_quantization"
STRIDE = 32
DEFAULT_OPSET = 17
_DYNAMO_MIN_OPSET = 18  # the dynamo exporter emits opset-18 ops (Split with num_outputs) and cannot go lower
_VERIFY_SIZES = ((256, 320), (320, 192))  # two small, different, non-square sizes: cheap and shape-revealing


class OnnxUnavailableError(FastSAMError):
    """An optional ONNX dependency (onnx, onnxruntime or onnxscript) is not installed."""


class OnnxExportError(FastSAMError):
    """The ONNX export failed or the exported graph disagrees with the PyTorch model."""


def require(module: str, extra: str = "onnx", error: type[FastSAMError] = OnnxUnavailableError):
    """Import an optional dependency or raise ``error`` (default :class:`OnnxUnavailableError`) naming the
    fastsam extra that installs it."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        packages = ", ".join(EXTRA_PACKAGES.get(extra, (module,)))
        raise error(f"{module} is not installed; {extra} support needs `{install_hint(extra)}` ({packages})") from exc


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InvalidInputError(f"sample_size must be (height, width), got {size!r}") from None
    if h < STRIDE or w < STRIDE or h % STRIDE or w % STRIDE:
        raise InvalidInputError(f"sample_size must be multiples of {STRIDE} (>= {STRIDE}), got {(h, w)}")
    return h, w


def _export_torchscript(model: torch.nn.Module, sample: torch.Tensor, path: Path, opset: int, dynamic: bool) -> None:
    axes = None
    if dynamic:
        axes = {
            INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAMES[0]: {0: "batch", 2: "anchors"},
            OUTPUT_NAMES[1]: {0: "batch", 2: "proto_height", 3: "proto_width"},
        }
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo; its tracer warnings are expected here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (sample,), str(path), dynamo=False, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            opset_version=opset, dynamic_axes=axes, do_constant_folding=True,
        )


def _export_dynamo(model: torch.nn.Module, sample: torch.Tensor, path: Path, opset: int, dynamic: bool) -> None:
    require("onnxscript")
    shapes = None
    if dynamic:
        # H and W as multiples of 32 so the exporter can prove the stride arithmetic (H/8, H/16, H/32) exact.
        rows = torch.export.Dim("rows", min=1, max=512)
        cols = torch.export.Dim("cols", min=1, max=512)
        shapes = {INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=1024), 2: STRIDE * rows, 3: STRIDE * cols}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (sample,), None, dynamo=True, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            opset_version=max(opset, _DYNAMO_MIN_OPSET), dynamic_shapes=shapes, external_data=False,
        )
    program.save(str(path), external_data=False)


def _model_metadata(model: YoloV8Seg, exporter: str, opset: int) -> dict[str, str]:
    cfg = model.cfg
    return {
        CONFIG_KEY: json.dumps(cfg.to_dict()),
        FORMAT_KEY: FORMAT_VERSION,
        "fastsam_num_classes": str(cfg.num_classes),
        "fastsam_num_masks": str(cfg.num_masks),
        "fastsam_stride": str(STRIDE),
        "fastsam_exporter": f"torch {torch.__version__} ({exporter}), opset {opset}",
        "fastsam_input": "images: (B, 3, H, W) float32 RGB in [0, 1], H and W multiples of 32",
    }


def set_metadata(path: str | Path, values: dict[str, str], dst: str | Path | None = None) -> None:
    """Set (add or replace) ``metadata_props`` entries of the ONNX file ``path``; write to ``dst`` (default: in
    place, atomically)."""
    onnx = require("onnx")
    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    _save_atomic(proto, Path(dst if dst is not None else path))


def read_metadata(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (needs ``onnx``)."""
    onnx = require("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def _save_atomic(proto, dst: Path) -> None:
    onnx = require("onnx")
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(f".{dst.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        onnx.save(proto, str(part))
        os.replace(part, dst)
    finally:
        part.unlink(missing_ok=True)


def _max_rel_error(ours: np.ndarray, ref: np.ndarray) -> float:
    scale = max(float(np.abs(ref).max()), 1.0)
    return float(np.abs(ours - ref).max()) / scale


def compare_with_torch(model: YoloV8Seg, run: Callable[[np.ndarray], Sequence[np.ndarray]], label: str,
                       sizes: Iterable[Sequence[int]] = _VERIFY_SIZES, rtol: float = 1e-3,
                       seed: int = 0) -> dict[tuple[int, int], float]:
    """Run ``run`` ((1, 3, H, W) float32 array -> (predictions, protos) arrays: an exported network in its
    runtime) at each (H, W) in ``sizes`` and compare with ``model`` (fp32 torch). ``label`` names the export in
    errors.

    Returns the largest relative error per size (max |difference| over max(max |reference|, 1), per output and
    separately for the boxes and the scores / coefficients of ``predictions``); raises
    :class:`OnnxExportError` above ``rtol`` or on a shape mismatch (for example an anchor grid baked for one
    size)."""
    reference = copy.deepcopy(model).float().cpu().eval().fuse()
    generator = torch.Generator().manual_seed(seed)
    errors = {}
    for size in sizes:
        h, w = _check_size(size)
        images = torch.rand(1, 3, h, w, generator=generator)
        with torch.inference_mode():
            expected = [t.numpy() for t in reference(images)]
        got = run(images.numpy())
        worst = 0.0
        for name, ours, ref in zip(OUTPUT_NAMES, got, expected):
            if ours.shape != ref.shape:
                raise OnnxExportError(f"{label}: {name} has shape {ours.shape} at input {h}x{w}, PyTorch gives "
                                      f"{ref.shape}; the export is not valid for this input size")
            if name == OUTPUT_NAMES[0]:  # boxes in pixels, then scores and coefficients: each at its own scale
                worst = max(worst, _max_rel_error(ours[:, :4], ref[:, :4]), _max_rel_error(ours[:, 4:], ref[:, 4:]))
            else:
                worst = max(worst, _max_rel_error(ours, ref))
        if worst > rtol:
            raise OnnxExportError(f"{label}: outputs differ from PyTorch at input {h}x{w} (relative error "
                                  f"{worst:.2e} > {rtol:.0e})")
        errors[(h, w)] = worst
    return errors


def verify_onnx(model: YoloV8Seg, path: str | Path, sizes: Iterable[Sequence[int]] = _VERIFY_SIZES,
                rtol: float = 1e-3, seed: int = 0) -> dict[tuple[int, int], float]:
    """Run the ONNX file with onnxruntime at each (H, W) in ``sizes`` and compare with ``model`` (fp32 torch);
    see :func:`compare_with_torch` for what is returned and raised."""
    ort = require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return compare_with_torch(model, lambda images: session.run(list(OUTPUT_NAMES), {INPUT_NAME: images}),
                              str(path), sizes, rtol, seed)


def export_onnx(model: YoloV8Seg, path: str | Path, opset: int = DEFAULT_OPSET, dynamic: bool = True,
                sample_size: Sequence[int] = (640, 640), exporter: str = "auto", verify: bool = True) -> Path:
    """Write ``model`` (batch norms folded, on a copy; the argument is not modified) as an ONNX file.

    ``dynamic``: batch, height and width are free (height and width multiples of 32); otherwise the graph is
    fixed to batch 1 and ``sample_size`` (H, W). ``exporter``: "torchscript" (``torch.onnx.export(dynamo=False)``),
    "dynamo" (needs onnxscript; opset >= 18), or "auto": TorchScript when this torch still has it, else dynamo.
    ``verify``: when onnxruntime is installed, run the file at two input sizes (and at ``sample_size`` when the
    graph is static) and compare with PyTorch, raising :class:`OnnxExportError` on disagreement.
    Returns the path written. The file is written atomically (a partial export never looks complete).
    """
    if not isinstance(model, YoloV8Seg):
        raise InvalidInputError(f"export_onnx needs a YoloV8Seg model, got {type(model).__name__}")
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise InvalidInputError(f"exporter must be 'auto', 'torchscript' or 'dynamo', got {exporter!r}")
    if not isinstance(opset, int) or not 13 <= opset <= 23:
        raise InvalidInputError(f"opset must be an integer in [13, 23], got {opset!r}")
    h, w = _check_size(sample_size)
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{path} is a directory; give the output .onnx file path")
    require("onnx")
    fused = copy.deepcopy(model).float().cpu().eval().fuse()
    sample = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fastsam-onnx-", dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        used, used_opset, failure = None, opset, None
        if exporter in ("auto", "torchscript"):
            try:
                _export_torchscript(fused, sample, raw, opset, dynamic)
                used = "torchscript"
            except Exception as exc:  # removed or failing TorchScript exporter: dynamo is the fallback
                if exporter == "torchscript":
                    raise OnnxExportError(f"TorchScript ONNX export failed: {exc}") from exc
                failure = exc
        if used is None:
            try:
                _export_dynamo(fused, sample, raw, opset, dynamic)
            except FastSAMError:
                raise
            except Exception as exc:
                note = f" (TorchScript exporter: {failure})" if failure is not None else ""
                raise OnnxExportError(f"dynamo ONNX export failed: {exc}{note}") from exc
            used, used_opset = "dynamo", max(opset, _DYNAMO_MIN_OPSET)
        set_metadata(raw, _model_metadata(fused, used, used_opset), dst=raw)
        if verify:
            try:
                require("onnxruntime")
            except OnnxUnavailableError:
                pass  # export only: nothing to verify with
            else:
                verify_onnx(fused, raw, _VERIFY_SIZES if dynamic else [(h, w)])
        os.replace(raw, path)
    return path


# --------------------------------------------------------------------------------------------- quantization


def _decode_and_output_nodes(graph) -> list[str]:
    """Names of the nodes that must stay fp32: everything between the graph outputs and the last convolution on
    each path back from them (box decoding, sigmoid scores, the final 1x1 head convolutions and the last
    prototype layer). int8 there would quantize box coordinates in pixels (steps of several pixels), scores and
    the mask coefficients and prototypes directly; these layers are a negligible share of the compute."""
    producer = {out: node for node in graph.node for out in node.output}
    excluded: dict[str, None] = {}
    stack = [o.name for o in graph.output]
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        if tensor in seen or tensor not in producer:
            continue
        seen.add(tensor)
        node = producer[tensor]
        excluded.setdefault(node.name, None)
        if node.op_type in ("Conv", "ConvTranspose"):
            continue  # the last convolution is kept fp32 but the layers before it are quantized
        stack.extend(node.input)
    return list(excluded)


def _named_nodes(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` giving every unnamed node a unique name (needed to exclude nodes by name)."""
    onnx = require("onnx")
    proto = onnx.load(str(src))
    used = {n.name for n in proto.graph.node if n.name}
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
    onnx.save(proto, str(dst))


def letterboxed_calibration(images: Iterable[str | Path | np.ndarray], imgsz: int = 1024,
                            square: bool = False) -> list[np.ndarray]:
    """Network inputs (1, 3, H, W) float32 for calibration: each image letterboxed as the predictor does
    (``square``: padded to imgsz x imgsz, for calibrators that need every input the same size)."""
    from fastsam.inference.letterbox import apply_letterbox, plan_letterbox
    from fastsam.io.image import load_image

    inputs = []
    for image in images:
        rgb = load_image(image)
        box = plan_letterbox((int(rgb.shape[0]), int(rgb.shape[1])), imgsz, STRIDE, rectangular=not square)
        array = apply_letterbox(rgb, box).astype(np.float32) / 255.0
        inputs.append(np.ascontiguousarray(array.transpose(2, 0, 1)[None]))
    return inputs


def quantize_onnx(src: str | Path, dst: str | Path, mode: str = "static",
                  calibration_images: Iterable[str | Path | np.ndarray] | None = None, imgsz: int = 1024,
                  per_channel: bool = True, keep_fp32: Sequence[str] = (), calibration: str = "minmax",
                  op_types: Sequence[str] | None = None) -> Path:
    """Quantize a fastsam ONNX export to int8 with ``onnxruntime.quantization``; returns ``dst``.

    ``mode="static"``: QDQ int8 weights (per channel) and activations, activation ranges calibrated (min/max) on
    ``calibration_images`` (paths, bytes or RGB arrays; letterboxed to ``imgsz`` as the predictor does, so use a
    few images like the ones you will segment). This is the fast one on CPUs with VNNI / AMX int8.
    ``keep_fp32``: extra node-name prefixes to leave in fp32 (the TorchScript export names nodes by module path,
    e.g. ``"/head/proto/"``); ``calibration``: "minmax" (default), "percentile" or "entropy" (these two pad the
    calibration inputs to imgsz x imgsz); ``op_types``: restrict quantization to these ONNX op types.
    ``mode="dynamic"``: int8 weights, activations quantized at run time; no calibration, but onnxruntime runs
    its ConvInteger convolutions slower than fp32 on most CPUs (kept for size: the file is ~4x smaller).
    Box decoding, score sigmoid, the last head convolutions and the last prototype layer stay fp32 either way.
    The fastsam metadata is kept, with ``fastsam_quantization`` added.
    """
    if mode not in ("static", "dynamic"):
        raise InvalidInputError(f"mode must be 'static' or 'dynamic', got {mode!r}")
    require("onnx")
    require("onnxruntime")
    from onnxruntime import quantization as q

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise CheckpointError(f"ONNX model not found: {src}")
    if not isinstance(imgsz, int) or imgsz < STRIDE or imgsz % STRIDE:
        raise InvalidInputError(f"imgsz must be a multiple of {STRIDE}, got {imgsz!r}")
    try:
        metadata = read_metadata(src)
    except Exception as exc:  # onnx raises DecodeError / ValueError for non-ONNX bytes
        raise CheckpointError(f"{src} is not a readable ONNX model: {exc}") from exc
    if CONFIG_KEY not in metadata:
        raise InvalidInputError(f"{src} is not a fastsam ONNX export (no {CONFIG_KEY} metadata)")
    if QUANT_KEY in metadata:
        raise InvalidInputError(f"{src} is already quantized ({metadata[QUANT_KEY]})")
    if dst.exists() and dst.resolve() == src.resolve():
        raise InvalidInputError(f"quantization would overwrite its source {src}; choose another output path")
    methods = {"minmax": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile,
               "entropy": q.CalibrationMethod.Entropy}
    if calibration not in methods:
        raise InvalidInputError(f"calibration must be one of {sorted(methods)}, got {calibration!r}")
    inputs: list[np.ndarray] = []
    if mode == "static":
        if calibration_images is None:
            raise InvalidInputError("static quantization needs calibration_images (a few representative images)")
        inputs = letterboxed_calibration(calibration_images, imgsz, square=calibration != "minmax")
        if not inputs:
            raise InvalidInputError("calibration_images is empty")

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fastsam-quant-", dir=dst.parent) as tmp:
        named, prepared, out = Path(tmp) / "named.onnx", Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        _named_nodes(src, named)
        try:
            # Shape inference + graph optimisation before quantization, as onnxruntime recommends.
            q.quant_pre_process(str(named), str(prepared), skip_symbolic_shape=True)
            _named_nodes(prepared, prepared)
        except Exception:  # optional step: quantize the plain export when it fails
            prepared = named
        onnx = require("onnx")
        graph = onnx.load(str(prepared)).graph
        excluded = _decode_and_output_nodes(graph)
        excluded += [n.name for n in graph.node if n.name not in excluded and n.name.startswith(tuple(keep_fp32))]
        if mode == "dynamic":
            q.quantize_dynamic(str(prepared), str(out), weight_type=q.QuantType.QInt8, per_channel=per_channel,
                               nodes_to_exclude=excluded, op_types_to_quantize=["Conv"])
        else:
            class _ListReader(q.CalibrationDataReader):
                def __init__(self, items: list[np.ndarray]) -> None:
                    self._items = iter([{INPUT_NAME: x} for x in items])

                def get_next(self):
                    return next(self._items, None)

            reader = _ListReader(inputs)
            q.quantize_static(
                str(prepared), str(out), reader, quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                calibrate_method=methods[calibration], nodes_to_exclude=excluded,
                op_types_to_quantize=list(op_types) if op_types else None,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        metadata[QUANT_KEY] = f"int8-{mode}" + (f" ({len(inputs)} calibration images, imgsz {imgsz})" if inputs else "")
        set_metadata(out, metadata, dst=dst)
    return dst

