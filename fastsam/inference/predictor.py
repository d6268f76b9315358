"""FastSAM's all-instance stage: image -> letterbox -> network -> detections -> masks (as RLE)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence, Union

import numpy as np
import torch

from fastsam.errors import InvalidInputError
from fastsam.inference.letterbox import Letterbox, apply_letterbox, plan_letterbox
from fastsam.inference.masks import PrototypeMasks
from fastsam.inference.postprocess import (
    scale_boxes_to_image,
    select_detections,
    snap_to_full_image,
)
from fastsam.inference.precision import InferenceModel, check_precision
from fastsam.io.image import DEFAULT_MAX_PIXELS, ImageSource, load_image
from fastsam.model.yolov8_seg import YoloV8Seg
from fastsam.result import SegmentationResult

STRIDE = 32


class Backend(Protocol):
    """Anything that runs the network: (1, 3, H, W) float RGB in [0, 1] -> (predictions (1, 4 + nc + nm, A),
    protos (1, nm, H/4, W/4)), as :class:`YoloV8Seg` does in eval mode."""

    num_classes: int

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def check_network_input(images: torch.Tensor) -> tuple[int, int]:
    """(H, W) of a backend's input batch; raises :class:`InvalidInputError` unless it is (B, 3, H, W) with H and
    W multiples of 32 (what every backend needs; the predictor's letterbox guarantees it)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise InvalidInputError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    h, w = int(images.shape[2]), int(images.shape[3])
    if h % STRIDE or w % STRIDE:
        raise InvalidInputError(f"image height and width must be multiples of {STRIDE}, got {h}x{w}")
    return h, w


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def check_settings(imgsz: int, conf: float, iou: float, max_det: int) -> None:
    """Raise :class:`InvalidInputError` for out-of-range inference settings."""
    if not isinstance(imgsz, (int, np.integer)) or isinstance(imgsz, bool) or imgsz < STRIDE:
        raise InvalidInputError(f"imgsz must be an integer >= {STRIDE}, got {imgsz!r}")
    if imgsz % STRIDE:
        raise InvalidInputError(f"imgsz must be a multiple of {STRIDE}, got {imgsz}")
    for name, value in (("conf", conf), ("iou", iou)):
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise InvalidInputError(f"{name} must be a number in [0, 1], got {value!r}")
    if not isinstance(max_det, (int, np.integer)) or max_det < 1:
        raise InvalidInputError(f"max_det must be a positive integer, got {max_det!r}")


class Predictor:
    """Runs FastSAM's first stage on images with a loaded :class:`YoloV8Seg`.

    Defaults are FastSAM's: imgsz 1024 (long side), conf 0.4, iou 0.9, max_det 300, retina masks (native image
    resolution). Each call returns a :class:`SegmentationResult` that answers prompts without the network.
    The model is switched to eval mode and its batch norms are fused in place. ``precision='bf16'`` runs the
    network in bfloat16 (see :mod:`fastsam.inference.precision`): faster on CPUs with AVX512-BF16/AMX, masks
    close to but not identical with fp32. ``keep_prototypes`` keeps each result's prototypes and coefficients
    (``result.prototypes``) for mask probabilities, e.g. for edge maps.
    """

    def __init__(self, model: Union[YoloV8Seg, Backend], device: str | torch.device = "cpu", imgsz: int = 1024,
                 conf: float = 0.4, iou: float = 0.9, max_det: int = 300, retina: bool = True,
                 max_pixels: int = DEFAULT_MAX_PIXELS, precision: str = "fp32", keep_prototypes: bool = False) -> None:
        check_settings(imgsz, conf, iou, max_det)
        self.precision = check_precision(precision)
        self.device = torch.device(device)
        if isinstance(model, YoloV8Seg):
            # Folding batch norms into convolutions is what the original does at load time too.
            model.to(self.device).eval().fuse()
            self.num_classes = model.cfg.num_classes
            self.model: Union[Backend, InferenceModel] = InferenceModel(model, self.precision)
        else:
            if self.precision != "fp32":
                raise InvalidInputError("precision applies to torch models; a backend brings its own")
            self.model = model
            self.num_classes = int(model.num_classes)
        self.imgsz, self.conf, self.iou, self.max_det, self.retina = imgsz, conf, iou, max_det, retina
        self.max_pixels = max_pixels
        self.keep_prototypes = bool(keep_prototypes)

    @classmethod
    def from_model(cls, model: str | Path = "auto", *, conf: float | None = None, iou: float | None = None,
                   progress: bool = False, **options: Any) -> "Predictor":
        """Load ``model`` (zoo name, checkpoint path, ``fastsam-default`` or ``auto``) into a Predictor. ``conf`` and
        ``iou`` default to the model's own: FastSAM's 0.4 and 0.9, the bundled model's 0.15 and 0.7. ``options``
        are the other keyword arguments of the constructor (device, imgsz, ...)."""
        from fastsam.model.zoo import auto_model, is_auto, load_model, model_thresholds

        name = auto_model() if is_auto(str(model)) else model
        conf, iou = model_thresholds(str(name), conf, iou)
        return cls(load_model(name, progress=progress), conf=conf, iou=iou, **options)

    def _settings(self, imgsz: int | None, conf: float | None, iou: float | None, max_det: int | None,
                  retina: bool | None) -> tuple[int, float, float, int, bool]:
        settings = (self.imgsz if imgsz is None else imgsz, self.conf if conf is None else conf,
                    self.iou if iou is None else iou, self.max_det if max_det is None else max_det,
                    self.retina if retina is None else retina)
        check_settings(*settings[:4])
        return settings

    def _prepare(self, image: ImageSource, imgsz: int, timings: dict[str, float]) -> tuple[np.ndarray, Letterbox, torch.Tensor]:
        """Decode and letterbox one image -> (RGB, its letterbox plan, (3, H, W) float input in [0, 1])."""
        with _timed(timings, "decode"):
            rgb = load_image(image, max_pixels=self.max_pixels)
        with _timed(timings, "letterbox"):
            box = plan_letterbox((int(rgb.shape[0]), int(rgb.shape[1])), imgsz, STRIDE)
            tensor = torch.from_numpy(apply_letterbox(rgb, box)).to(self.device)
            tensor = tensor.permute(2, 0, 1).float().div_(255.0)
        return rgb, box, tensor

    def _finish(self, image: ImageSource, rgb: np.ndarray, box: Letterbox, predictions: torch.Tensor,
                protos: torch.Tensor, conf: float, iou: float, max_det: int, retina: bool, keep_image: bool,
                timings: dict[str, float]) -> SegmentationResult:
        """Detections and run-length masks of one image from its network outputs (A rows, protos (nm, h, w))."""
        image_size = (int(rgb.shape[0]), int(rgb.shape[1]))
        with _timed(timings, "nms"):
            det = select_detections(predictions.float().cpu(), self.num_classes, conf, iou, max_det)
            snap_to_full_image(det, box.input_size)
            image_boxes = scale_boxes_to_image(det.boxes, box.input_size, image_size)
        with _timed(timings, "masks"):
            renderer = PrototypeMasks(protos.float().cpu(), det.coefficients, image_boxes, det.boxes,
                                      box.input_size, image_size, retina=retina)
            rles = renderer.encode_all()
        return SegmentationResult(
            image_size=image_size,
            boxes=image_boxes.numpy().astype(np.float32),
            scores=det.scores.numpy().astype(np.float32),
            rles=rles,
            image=rgb if keep_image else None,
            source=str(image) if isinstance(image, (str, Path)) else None,
            timings=timings,
            prototypes=renderer if self.keep_prototypes else None,
        )

    @torch.inference_mode()
    def __call__(self, image: ImageSource, imgsz: int | None = None, conf: float | None = None,
                 iou: float | None = None, max_det: int | None = None, retina: bool | None = None,
                 keep_image: bool = True) -> SegmentationResult:
        """Segment everything in ``image`` (path, bytes, RGB array or PIL image); settings override the defaults."""
        imgsz, conf, iou, max_det, retina = self._settings(imgsz, conf, iou, max_det, retina)
        timings: dict[str, float] = {}
        rgb, box, tensor = self._prepare(image, imgsz, timings)
        with _timed(timings, "network"):
            predictions, protos = self.model(tensor.unsqueeze(0))
        return self._finish(image, rgb, box, predictions[0], protos[0], conf, iou, max_det, retina, keep_image,
                            timings)

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[ImageSource], batch_size: int = 8, memory_budget_mb: float = 2048,
                      imgsz: int | None = None, conf: float | None = None, iou: float | None = None,
                      max_det: int | None = None, retina: bool | None = None,
                      keep_image: bool = False) -> Iterator[SegmentationResult]:
        """Segment many images, several per forward pass; yields one result per image, in order.

        Images are batched when their letterboxed inputs have the same shape (so every result equals the
        one-image result exactly), at most ``batch_size`` at once and no more than ``memory_budget_mb`` of
        estimated network activations per pass. Images are decoded only as the batch that needs them is formed.
        Each result's ``timings['network']`` is its share of its pass.
        """
        imgsz, conf, iou, max_det, retina = self._settings(imgsz, conf, iou, max_det, retina)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not (isinstance(memory_budget_mb, (int, float)) and memory_budget_mb > 0):
            raise InvalidInputError(f"memory_budget_mb must be positive, got {memory_budget_mb!r}")
        if isinstance(images, (str, bytes, Path, np.ndarray)):
            raise InvalidInputError("predict_batch takes a sequence of images; use predictor(image) for one")
        budget = memory_budget_mb * 2**20
        pending: list[tuple[ImageSource, np.ndarray, Letterbox, torch.Tensor, dict[str, float]]] = []

        def run_pending() -> Iterator[SegmentationResult]:
            timings_start = time.perf_counter()
            predictions, protos = self.model(torch.stack([item[3] for item in pending]))
            share = (time.perf_counter() - timings_start) / len(pending)
            for k, (image, rgb, box, _, timings) in enumerate(pending):
                timings["network"] = share
                yield self._finish(image, rgb, box, predictions[k], protos[k], conf, iou, max_det, retina,
                                   keep_image, timings)
            pending.clear()

        for image in images:
            timings: dict[str, float] = {}
            rgb, box, tensor = self._prepare(image, imgsz, timings)
            fits = pending and pending[0][3].shape == tensor.shape and len(pending) < batch_size and (
                (len(pending) + 1) * activation_bytes(tensor.shape[1:]) <= budget)
            if pending and not fits:
                yield from run_pending()
            pending.append((image, rgb, box, tensor, timings))
        if pending:
            yield from run_pending()


def activation_bytes(input_shape: Sequence[int]) -> float:
    """Rough peak bytes of network activations for one (3, H, W) input. Measured peaks per input pixel at
    1024 x 1024: 53 float32 values for the s size, 104 for x; 200 leaves room for allocator slack."""
    return 200.0 * 4 * float(input_shape[-2]) * float(input_shape[-1])
