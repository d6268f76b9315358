"""Run the FastSAM network with OpenVINO behind the :class:`~fastsam.inference.predictor.Backend` protocol, so
:class:`~fastsam.inference.predictor.Predictor` applies the same post-processing (NMS, masks, every prompt,
batches) as with the PyTorch model::

    from fastsam.inference.openvino_backend import openvino_backend_for
    predictor = Predictor(openvino_backend_for("FastSAM-s", precision="bf16"))

Precisions: ``fp32``; ``bf16`` (OpenVINO's bf16 inference hint, on CPUs whose OpenVINO plugin reports BF16:
AVX512-BF16 or AMX); ``int8`` (NNCF post-training quantisation calibrated on a few images, see
:func:`quantize_network`). A checkpoint is converted from the torch model (``openvino.convert_model``), checked
against torch at two input sizes, and kept as IR (``.xml`` + ``.bin``) in the cache, keyed by the weights'
SHA-256, the precision (and calibration images) and the OpenVINO version; compiled networks are cached beside it
(OpenVINO's ``CACHE_DIR``), so a second start reads a blob instead of compiling.

Needs ``openvino`` (and ``nncf`` for int8): ``pip install "fastsam-torch[openvino]"``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from fastsam.errors import CheckpointError, FastSAMError, InvalidInputError
from fastsam.inference.predictor import check_network_input
from fastsam.model.config import YoloV8SegConfig
from fastsam.model.onnx_export import (
    CONFIG_KEY, INPUT_NAME, OUTPUT_NAMES, QUANT_KEY, STRIDE, _model_metadata, compare_with_torch,
    letterboxed_calibration, require,
)
from fastsam.model.yolov8_seg import YoloV8Seg

__all__ = [
    "OPENVINO_PRECISIONS", "OpenVinoBackend", "OpenVinoUnavailableError", "PrecisionUnsupportedError",
    "convert_network", "openvino_backend_for", "output_layers", "quantize_network", "save_ir",
]

OPENVINO_PRECISIONS = ("fp32", "bf16", "int8")
# OpenVINO's inference precision per fastsam precision; int8 layers come from the quantised IR and the layers
# left out of the quantisation (see output_layers) run in f32.
_INFERENCE_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# What the CPU plugin must list in OPTIMIZATION_CAPABILITIES for a precision to run natively.
_CAPABILITY = {"bf16": "BF16", "int8": "INT8"}
_RT_SECTION = "framework"  # where OpenVINO's ONNX reader puts metadata_props: one place for both sources
_TRACE_SIZE = (64, 96)  # the example input traced (small: cheap); the IR's batch, height and width stay dynamic


class OpenVinoUnavailableError(FastSAMError):
    """``openvino`` (or ``nncf``, for int8) is not installed."""


class PrecisionUnsupportedError(InvalidInputError):
    """This CPU (as OpenVINO's CPU plugin reports it) cannot run the requested precision natively."""


def _require(module: str):
    return require(module, "openvino", OpenVinoUnavailableError)


def check_openvino_precision(precision: object, core=None) -> str:
    """``precision`` if it is one of :data:`OPENVINO_PRECISIONS` and this CPU runs it natively (bf16: OpenVINO's
    CPU plugin lists BF16, i.e. AVX512-BF16 or AMX; int8: it lists INT8); raises
    :class:`PrecisionUnsupportedError` otherwise (OpenVINO would silently run bf16 in f32 there)."""
    if precision not in OPENVINO_PRECISIONS:
        raise InvalidInputError(f"precision must be one of {', '.join(OPENVINO_PRECISIONS)}, got {precision!r}")
    if precision in _CAPABILITY:
        core = core if core is not None else _require("openvino").Core()
        capabilities = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        if _CAPABILITY[precision] not in capabilities:
            raise PrecisionUnsupportedError(
                f"this CPU does not support {precision} in OpenVINO (its capabilities: {', '.join(capabilities)}); "
                "use precision fp32")
    return str(precision)


# --------------------------------------------------------------------------------------------- conversion


def convert_network(model: YoloV8Seg, verify: bool = True):
    """``model`` (batch norms folded, on a copy) as an ``openvino.Model``: input ``images`` (B, 3, H, W) with B,
    H and W dynamic, outputs ``predictions`` and ``protos`` as in :mod:`fastsam.model.onnx_export`, the model
    config in the IR's rt_info. ``verify``: compile it in f32 and compare with torch at two input sizes
    (raises :class:`~fastsam.model.onnx_export.OnnxExportError` on disagreement). A few seconds."""
    if not isinstance(model, YoloV8Seg):
        raise InvalidInputError(f"convert_network needs a YoloV8Seg model, got {type(model).__name__}")
    ov = _require("openvino")
    fused = copy.deepcopy(model).float().cpu().eval().fuse()
    sample = torch.rand(1, 3, *_TRACE_SIZE, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's warnings about shape arithmetic are expected
        # Traced here without the tracer's own check (three more forward passes: 4/5 of convert_model's time);
        # ``verify`` compares the converted network with torch instead, at other sizes.
        traced = torch.jit.trace(fused, sample, check_trace=False)
        network = ov.convert_model(traced, example_input=sample, input=[(-1, 3, -1, -1)])
    network.inputs[0].get_tensor().set_names({INPUT_NAME})
    for output, name in zip(network.outputs, OUTPUT_NAMES):
        output.get_tensor().set_names({name})
    for key, value in _model_metadata(fused, "openvino.convert_model", 0).items():
        if key != "fastsam_exporter":
            network.set_rt_info(value, [_RT_SECTION, key])
    network.set_rt_info(f"torch {torch.__version__}, openvino {ov.__version__} (convert_model)",
                        [_RT_SECTION, "fastsam_exporter"])
    if verify:
        compiled = ov.Core().compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        compare_with_torch(fused, lambda images: [compiled(images)[i] for i in range(len(OUTPUT_NAMES))],
                           "OpenVINO conversion")
    return network


def output_layers(network) -> list[str]:
    """Names of the operations that decide masks and boxes: everything between the outputs and the last
    convolution on each path back from them (box decoding, score sigmoid, the last convolution of each head
    branch and of the prototypes). Shape computations (the anchor grid's ShapeOf) are not followed, so the
    layers whose shapes they read are not included."""
    stack = [result for result in network.get_results()]
    seen: set[str] = set()
    names: list[str] = []
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        kind = node.get_type_name()
        if name in seen or kind in ("Constant", "Parameter", "ShapeOf"):
            continue
        seen.add(name)
        if kind != "Result":
            names.append(name)
        if kind in ("Convolution", "ConvolutionBackpropData", "GroupConvolution"):
            continue  # the last convolution stays in higher precision; the layers before it do not
        stack.extend(value.get_node() for value in node.input_values())
    return names


def quantize_network(network, calibration_images: Iterable, imgsz: int = 1024, keep_outputs: bool = True):
    """An int8 copy of ``network`` by NNCF post-training quantisation (mixed preset: symmetric int8 weights,
    asymmetric activations) with activation ranges from ``calibration_images`` (paths, bytes or RGB arrays,
    letterboxed to ``imgsz`` as the predictor does: a few images like the ones you will segment).
    ``keep_outputs`` leaves :func:`output_layers` in f32: int8 there would quantise the box coordinates (in
    pixels), the scores and the mask coefficients and prototypes that are thresholded at zero."""
    if not isinstance(imgsz, int) or imgsz < STRIDE or imgsz % STRIDE:
        raise InvalidInputError(f"imgsz must be a multiple of {STRIDE}, got {imgsz!r}")
    inputs = letterboxed_calibration(list(calibration_images), imgsz)
    if not inputs:
        raise InvalidInputError("int8 quantisation needs calibration images (a few like the ones you will segment)")
    nncf = _require("nncf")
    ignored = nncf.IgnoredScope(names=output_layers(network), validate=False) if keep_outputs else None
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)  # not NNCF's per-layer INFO lines; its progress bars stay
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Full bias correction (not the fast one): slower to quantise, and measured better masks on trained
            # weights (n84 on sa_8776: matched IoU 0.89 -> 0.94; fastsam-default on dogs.jpg 0.93 -> 0.95).
            quantized = nncf.quantize(network, nncf.Dataset(inputs), preset=nncf.QuantizationPreset.MIXED,
                                      subset_size=len(inputs), ignored_scope=ignored, fast_bias_correction=False)
    finally:
        nncf_log.setLevel(level)
    quantized.set_rt_info(f"int8 (NNCF, {len(inputs)} calibration images, imgsz {imgsz})", [_RT_SECTION, QUANT_KEY])
    return quantized


def save_ir(network, path: str | Path) -> Path:
    """Write ``network`` as OpenVINO IR: ``path`` (.xml) and the weights beside it (.bin), weights kept in their
    precision (not compressed to fp16). Written atomically: a partial IR never looks complete."""
    ov = _require("openvino")
    path = Path(path)
    if path.suffix != ".xml":
        raise InvalidInputError(f"an OpenVINO IR path ends in .xml, got {path}")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a directory; give the output .xml file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fastsam-ir-", dir=path.parent) as tmp:
        part = Path(tmp) / path.name
        ov.save_model(network, str(part), compress_to_fp16=False)
        os.replace(part.with_suffix(".bin"), path.with_suffix(".bin"))  # weights first: the .xml marks completion
        os.replace(part, path)
    return path


# --------------------------------------------------------------------------------------------- the backend


class OpenVinoBackend:
    """A fastsam network in OpenVINO IR (``.xml`` from :func:`save_ir` / ``fastsam export --format openvino``) or
    ONNX (``fastsam export``), compiled for the CPU.

    ``precision``: "fp32" or "bf16" for an unquantised network, "int8" (or None: the network's own) for one made
    by :func:`quantize_network`. ``threads``: inference threads, default torch's (``torch.get_num_threads()``).
    ``cache_dir``: OpenVINO's compiled-model cache (a second compile of the same network and settings reads it).
    Raises :class:`CheckpointError` for a missing, corrupt or non-fastsam file, :class:`PrecisionUnsupportedError`
    when the CPU lacks the precision and :class:`OpenVinoUnavailableError` without openvino. Safe to call from
    several threads (one inference request per thread).
    """

    def __init__(self, path: str | Path, precision: str | None = None, threads: int | None = None,
                 cache_dir: str | Path | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"OpenVINO model not found: {path}" if not path.exists() else
                                  f"OpenVINO model path is not a file: {path}")
        if path.suffix.lower() not in (".xml", ".onnx"):
            raise CheckpointError(f"{path}: an OpenVINO backend opens an IR (.xml) or ONNX (.onnx) file")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InvalidInputError(f"threads must be a positive integer, got {threads!r}")
        ov = _require("openvino")
        core = ov.Core()
        try:
            network = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError for unparsable XML, a missing or short .bin, ...
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path} is not a readable OpenVINO model: {message}") from exc
        metadata = _metadata(network)
        if CONFIG_KEY not in metadata:
            raise CheckpointError(f"{path} is not a fastsam network (no {CONFIG_KEY!r} metadata); write it with "
                                  "`fastsam export MODEL OUT.xml --format openvino`")
        try:
            self.config = YoloV8SegConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: the fastsam config metadata is not valid JSON ({exc})") from exc
        self.quantization = metadata.get(QUANT_KEY)
        native = "int8" if self.quantization or _has_fake_quantize(network) else "fp32"
        precision = native if precision is None else precision
        check_openvino_precision(precision, core)
        if (precision == "int8") != (native == "int8"):
            raise InvalidInputError(
                f"{path} is an {native} network; int8 needs one quantised with calibration images "
                "(openvino_backend_for(model, 'int8', calibration_images=...) or `fastsam export --quantize int8`)"
                if native == "fp32" else f"{path} is quantised to int8; open it with precision 'int8'")
        names = [tuple(o.get_names()) for o in network.outputs]
        if [i.get_any_name() for i in network.inputs] != [INPUT_NAME] or len(names) < 2 or not all(
                expected in got for expected, got in zip(OUTPUT_NAMES, names)):
            raise CheckpointError(f"{path}: unexpected graph signature; expected [{INPUT_NAME!r}] -> {list(OUTPUT_NAMES)}")
        settings = {"INFERENCE_PRECISION_HINT": _INFERENCE_HINT[precision], "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
        if cache_dir is not None:
            settings["CACHE_DIR"] = str(cache_dir)
        try:
            self.compiled = core.compile_model(network, "CPU", settings)
        except Exception as exc:
            raise CheckpointError(f"{path}: OpenVINO could not compile the network: {exc}") from exc
        self.path, self.precision, self.metadata = path, precision, metadata
        self.num_classes = self.config.num_classes
        self.threads = settings["INFERENCE_NUM_THREADS"]
        self._local = threading.local()

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) float RGB in [0, 1], H and W multiples of 32 -> (predictions (B, 4 + nc + nm, A),
        protos (B, nm, H/4, W/4)) as float32 CPU tensors."""
        check_network_input(images)
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        results = request.infer({0: array}, share_inputs=True, share_outputs=False)
        return torch.from_numpy(results[0]), torch.from_numpy(results[1])

    def __repr__(self) -> str:
        return f"OpenVinoBackend({str(self.path)!r}, nc={self.num_classes}, {self.precision}, threads={self.threads})"


def _metadata(network) -> dict[str, str]:
    if not network.has_rt_info([_RT_SECTION]):
        return {}
    section = network.get_rt_info()[_RT_SECTION]
    return {key: network.get_rt_info([_RT_SECTION, key]).astype(str) for key in section}


def _has_fake_quantize(network) -> bool:
    return any(op.get_type_name() == "FakeQuantize" for op in network.get_ops())


# --------------------------------------------------------------------------------------------- from a checkpoint


def _images_digest(images: Sequence) -> str:
    """SHA-256 prefix over the calibration images' bytes (paths are read), so other images quantise anew."""
    digest = hashlib.sha256()
    for image in images:
        if isinstance(image, (str, os.PathLike)):
            digest.update(Path(image).read_bytes())
        elif isinstance(image, bytes):
            digest.update(image)
        else:
            digest.update(np.ascontiguousarray(np.asarray(image)).tobytes())
    return digest.hexdigest()[:12]


def openvino_backend_for(model: str | Path, precision: str = "fp32", calibration_images: Sequence | None = None,
                         imgsz: int = 1024, cache: str | Path | None = None,
                         threads: int | None = None) -> OpenVinoBackend:
    """An :class:`OpenVinoBackend` for ``model``: an ``.xml`` or ``.onnx`` file is opened as is (in
    ``precision``); a checkpoint path or zoo name is converted once into ``cache`` (default
    ``<cache_dir()>/openvino``) as IR named after the weights' SHA-256, the precision (int8: and the calibration
    images' SHA-256, ``imgsz``) and the OpenVINO version; later calls reuse the IR and the compiled blob beside it.
    ``calibration_images`` (int8 only, required there): a few images like the ones you will segment."""
    from fastsam.model.checkpoint import load_weights
    from fastsam.model.zoo import cache_dir, resolve_weights, sha256_file

    ov = _require("openvino")
    path = Path(model).expanduser()
    if path.suffix.lower() in (".xml", ".onnx"):
        return OpenVinoBackend(path, precision=precision, threads=threads)
    check_openvino_precision(precision)
    calibration = list(calibration_images or ())
    if precision == "int8" and not calibration:
        raise InvalidInputError("precision int8 needs calibration_images (a few like the ones you will segment)")
    weights = resolve_weights(model, progress=False)
    folder = Path(cache) if cache is not None else cache_dir() / "openvino"
    version = ov.__version__.split("-")[0]
    stem = f"{weights.stem}-{sha256_file(weights)[:16]}"
    fp32_ir = folder / f"{stem}-fp32-ov{version}" / "network.xml"
    target = fp32_ir
    if precision == "int8":
        target = folder / f"{stem}-int8-{_images_digest(calibration)}-{imgsz}-ov{version}" / "network.xml"
    if not target.is_file():
        network = None
        if fp32_ir.is_file():
            network = ov.Core().read_model(str(fp32_ir))
        if network is None:
            network = convert_network(load_weights(weights))
            save_ir(network, fp32_ir)
        if precision == "int8":
            save_ir(quantize_network(network, calibration, imgsz), target)
    return OpenVinoBackend(target, precision=precision, threads=threads, cache_dir=target.parent / "compiled")

