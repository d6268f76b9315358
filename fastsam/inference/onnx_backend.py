"""Run an exported FastSAM network with onnxruntime behind the :class:`~fastsam.inference.predictor.Backend`
protocol, so :class:`~fastsam.inference.predictor.Predictor` applies the same post-processing (NMS, masks,
every prompt) as with the PyTorch model::

    from fastsam.inference.onnx_backend import OnnxBackend
    predictor = Predictor(OnnxBackend("FastSAM-s.onnx"))

Needs ``onnxruntime`` (``pip install "fastsam-torch[onnx]"``); ``onnx`` is not needed to run a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fastsam.eval.matching import matched_mask_ious  # noqa: F401  (re-exported)
from fastsam.errors import CheckpointError, InvalidInputError
from fastsam.inference.predictor import check_network_input
from fastsam.model.config import YoloV8SegConfig
from fastsam.model.onnx_export import (
    CONFIG_KEY, DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAMES, QUANT_KEY, OnnxUnavailableError, export_onnx,
    require,
)

__all__ = ["OnnxBackend", "OnnxUnavailableError", "mask_agreement", "matched_mask_ious", "onnx_backend_for"]


class OnnxBackend:
    """An ONNX file written by :func:`fastsam.model.onnx_export.export_onnx` (or quantized by
    :func:`~fastsam.model.onnx_export.quantize_onnx`) in an onnxruntime session.

    ``providers``: onnxruntime execution providers, default CPU only. ``threads``: intra-op threads, default
    torch's thread count (``torch.get_num_threads()``), so both backends use the same cores.
    Raises :class:`CheckpointError` for a missing, unreadable or non-fastsam file and
    :class:`OnnxUnavailableError` when onnxruntime is not installed.
    """

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        path = Path(path)
        if not path.exists():
            raise CheckpointError(f"ONNX model not found: {path}")
        if not path.is_file():
            raise CheckpointError(f"ONNX model path is not a file: {path}")
        if path.stat().st_size == 0:
            raise CheckpointError(f"ONNX model file is empty: {path}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InvalidInputError(f"threads must be a positive integer, got {threads!r}")
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no per-session optimiser chatter
        providers = list(providers) if providers else ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph types
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path} is not a loadable ONNX model: {message}") from exc

        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if CONFIG_KEY not in metadata:
            raise CheckpointError(
                f"{path} is an ONNX model but not a fastsam export (no {CONFIG_KEY!r} metadata); export it with "
                "`fastsam export MODEL OUT.onnx`"
            )
        try:
            self.config = YoloV8SegConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: the fastsam config metadata is not valid JSON ({exc})") from exc
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or outputs[:2] != list(OUTPUT_NAMES):
            raise CheckpointError(f"{path}: unexpected graph signature {inputs} -> {outputs}; expected "
                                  f"[{INPUT_NAME!r}] -> {list(OUTPUT_NAMES)}")
        shape = self.session.get_inputs()[0].shape
        # Fixed sizes (a static export) are ints; dynamic ones are names.
        self.fixed_size = tuple(shape[2:]) if all(isinstance(v, int) for v in shape[2:]) else None
        self.path = path
        self.metadata = metadata
        self.num_classes = self.config.num_classes
        self.quantization = metadata.get(QUANT_KEY)
        self.providers = self.session.get_providers()

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) float RGB in [0, 1], H and W multiples of 32 -> (predictions (B, 4 + nc + nm, A),
        protos (B, nm, H/4, W/4)) as float32 CPU tensors."""
        h, w = check_network_input(images)
        if self.fixed_size is not None and (h, w) != self.fixed_size:
            raise InvalidInputError(f"{self.path} was exported for {self.fixed_size[0]}x{self.fixed_size[1]} inputs "
                                    f"only, got {h}x{w}; export with dynamic=True or use imgsz to match")
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        predictions, protos = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: array})
        return torch.from_numpy(predictions), torch.from_numpy(protos)

    def __repr__(self) -> str:
        quant = f", {self.quantization}" if self.quantization else ""
        return f"OnnxBackend({str(self.path)!r}, nc={self.num_classes}{quant}, providers={self.providers})"


def onnx_backend_for(model: str | Path, cache: str | Path | None = None, opset: int = DEFAULT_OPSET,
                     providers: Sequence[str] | None = None, threads: int | None = None) -> OnnxBackend:
    """An :class:`OnnxBackend` for ``model``: an ``.onnx`` file is opened as is; a checkpoint path or zoo name
    is exported once to ``cache`` (default ``<cache_dir()>/onnx``), named after the checkpoint's SHA-256 so a
    changed checkpoint is exported again, and the cached file is reused afterwards."""
    from fastsam.model.checkpoint import load_weights
    from fastsam.model.zoo import cache_dir, resolve_weights, sha256_file

    path = Path(model).expanduser()
    if path.suffix.lower() == ".onnx":
        return OnnxBackend(path, providers=providers, threads=threads)
    weights = resolve_weights(model, progress=False)
    digest = sha256_file(weights)[:16]
    folder = Path(cache) if cache is not None else cache_dir() / "onnx"
    target = folder / f"{weights.stem}-{digest}-opset{opset}.onnx"
    if not target.is_file():
        export_onnx(load_weights(weights), target, opset=opset)
    return OnnxBackend(target, providers=providers, threads=threads)



def mask_agreement(reference, candidate, images: Sequence[str | Path], **settings) -> dict:
    """How closely ``candidate`` (a backend or model, e.g. an int8 :class:`OnnxBackend`) reproduces the
    everything-mode masks of ``reference`` (e.g. the fp32 export) on ``images``. ``settings`` go to
    :class:`~fastsam.inference.predictor.Predictor` (imgsz, conf, iou, ...).

    Returns ``{"images": [{"image", "instances", "reference_instances", "mean_iou", "median_iou"}, ...],
    "mean_iou": ...}`` where mean_iou is the mean over the reference masks of :func:`matched_mask_ious`."""
    from fastsam.inference.predictor import Predictor

    ref_predictor, cand_predictor = Predictor(reference, **settings), Predictor(candidate, **settings)
    rows, all_ious = [], []
    for image in images:
        ref = [r.to_coco() for r in ref_predictor(image, keep_image=False).rles]
        cand = [r.to_coco() for r in cand_predictor(image, keep_image=False).rles]
        ious = matched_mask_ious(cand, ref)
        all_ious.append(ious)
        rows.append({"image": str(image), "instances": len(cand), "reference_instances": len(ref),
                     "mean_iou": float(ious.mean()) if len(ious) else 1.0,
                     "median_iou": float(np.median(ious)) if len(ious) else 1.0})
    joined = np.concatenate(all_ious) if all_ious else np.zeros(0)
    return {"images": rows, "mean_iou": float(joined.mean()) if len(joined) else 1.0}
