"""FastSAM's all-instance stage: image -> letterbox -> network -> detections -> masks (as RLE)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol, Union

import numpy as np
import torch

from fastsam.errors import InvalidInputError
from fastsam.inference.letterbox import apply_letterbox, plan_letterbox
from fastsam.inference.masks import PrototypeMasks
from fastsam.inference.precision import ReducedPrecisionModel, check_precision
from fastsam.inference.postprocess import scale_boxes_to_image, select_detections, snap_to_full_image
from fastsam.io.image import DEFAULT_MAX_PIXELS, ImageSource, load_image
from fastsam.model.yolov8_seg import YoloV8Seg
from fastsam.result import SegmentationResult

STRIDE = 32


class Backend(Protocol):
    """Anything that runs the network: (1, 3, H, W) float RGB in [0, 1] -> (predictions (1, 4 + nc + nm, A),
    protos (1, nm, H/4, W/4)), as :class:`YoloV8Seg` does in eval mode."""

    num_classes: int

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


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
    close to but not identical with fp32.
    """

    def __init__(self, model: Union[YoloV8Seg, Backend], device: str | torch.device = "cpu", imgsz: int = 1024,
                 conf: float = 0.4, iou: float = 0.9, max_det: int = 300, retina: bool = True,
                 max_pixels: int = DEFAULT_MAX_PIXELS, precision: str = "fp32") -> None:
        check_settings(imgsz, conf, iou, max_det)
        self.precision = check_precision(precision)
        self.device = torch.device(device)
        if isinstance(model, YoloV8Seg):
            # Folding batch norms into convolutions is what the original does at load time too.
            self.model: Union[YoloV8Seg, Backend, ReducedPrecisionModel] = model.to(self.device).eval().fuse()
            self.num_classes = model.cfg.num_classes
            if self.precision != "fp32":
                self.model = ReducedPrecisionModel(self.model)
        else:
            if self.precision != "fp32":
                raise InvalidInputError("precision applies to torch models; a backend brings its own")
            self.model = model
            self.num_classes = int(model.num_classes)
        self.imgsz, self.conf, self.iou, self.max_det, self.retina = imgsz, conf, iou, max_det, retina
        self.max_pixels = max_pixels

    @torch.inference_mode()
    def __call__(self, image: ImageSource, imgsz: int | None = None, conf: float | None = None,
                 iou: float | None = None, max_det: int | None = None, retina: bool | None = None,
                 keep_image: bool = True) -> SegmentationResult:
        """Segment everything in ``image`` (path, bytes, RGB array or PIL image); settings override the defaults."""
        imgsz = self.imgsz if imgsz is None else imgsz
        conf = self.conf if conf is None else conf
        iou = self.iou if iou is None else iou
        max_det = self.max_det if max_det is None else max_det
        retina = self.retina if retina is None else retina
        check_settings(imgsz, conf, iou, max_det)

        timings: dict[str, float] = {}
        with _timed(timings, "decode"):
            rgb = load_image(image, max_pixels=self.max_pixels)
        image_size = (int(rgb.shape[0]), int(rgb.shape[1]))
        with _timed(timings, "letterbox"):
            box = plan_letterbox(image_size, imgsz, STRIDE)
            tensor = torch.from_numpy(apply_letterbox(rgb, box)).to(self.device)
            tensor = tensor.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        with _timed(timings, "network"):
            predictions, protos = self.model(tensor)
        with _timed(timings, "nms"):
            det = select_detections(predictions[0].float().cpu(), self.num_classes, conf, iou, max_det)
            snap_to_full_image(det, box.input_size)
            image_boxes = scale_boxes_to_image(det.boxes, box.input_size, image_size)
        with _timed(timings, "masks"):
            renderer = PrototypeMasks(protos[0].float().cpu(), det.coefficients, image_boxes, det.boxes,
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
        )
