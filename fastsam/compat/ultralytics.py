"""Ultralytics' FastSAM API on fastsam: ``FastSAM("FastSAM-s.pt")(source, bboxes=, points=, labels=, texts=)``
and ``FastSAMPredictor(overrides=...)`` with ``predictor.prompt(results, ...)``.

Prompts follow Ultralytics' rules (``ultralytics/models/fastsam/predict.py``): each box (truncated to integers)
selects the instance whose mask has the best IoU with it, the box's area counted as given, unclipped; points
select every instance holding them, walked in order, a background point deselecting the instances that hold it
(with only background points, every instance starts selected); each text selects the instance whose crop CLIP
matches best; the kinds combine as a union, and the answer is a ``Results`` view of the selected instances in
their original order.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterator

import numpy as np
import torch

from fastsam.compat.images import bgr_source_to_rgb, is_single_source, source_name
from fastsam.compat.results import NAMES, Results
from fastsam.errors import InvalidInputError
from fastsam.inference.predictor import STRIDE, Predictor
from fastsam.model.checkpoint import load_weights
from fastsam.model.zoo import resolve_weights
from fastsam.prompts.boxes import best_box_instance
from fastsam.prompts.validation import check_boxes, check_points
from fastsam.result import SegmentationResult

#: Ultralytics' prediction defaults (its cfg/default.yaml), with the released FastSAM checkpoints' imgsz 1024,
#: which Ultralytics and the original take from the checkpoint's training arguments.
DEFAULTS: dict[str, Any] = {"imgsz": 1024, "conf": 0.25, "iou": 0.7, "max_det": 300, "retina_masks": False,
                            "device": "cpu"}
#: Ultralytics arguments accepted and ignored: fastsam has nothing to do for them (FastSAM is class-agnostic,
#: nothing is written or shown unless asked through ``Results``).
IGNORED = frozenset({"verbose", "save", "show", "agnostic_nms", "task", "mode", "model", "batch", "half",
                     "save_txt", "save_conf", "save_crop", "show_labels", "show_conf", "show_boxes", "line_width",
                     "project", "name", "exist_ok", "vid_stride", "stream_buffer", "visualize", "augment"})


def check_device(device: object) -> torch.device:
    """Ultralytics' device spellings ('cpu', 'cuda', 'cuda:1', '0', 0, 'mps') as a torch.device; raises
    InvalidInputError for an unknown spelling or for CUDA where there is none."""
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool):
        device = f"cuda:{int(device)}"
    if isinstance(device, str):
        spelled = device.strip().lower()
        try:
            device = torch.device(f"cuda:{spelled}" if spelled.isdigit() else spelled or "cpu")
        except RuntimeError as exc:
            raise InvalidInputError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or N") from exc
    if not isinstance(device, torch.device):
        raise InvalidInputError(f"device must be a string, an int or a torch.device, got {device!r:.80}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {str(device)!r} asks for CUDA, which this machine or torch build lacks; "
                                "use device='cpu'")
    return device


def _imgsz(imgsz: object) -> int:
    """An int rounded up to a multiple of the stride, as Ultralytics' check_imgsz (it warns, we do the same
    silently); a [size] list of one is accepted."""
    if isinstance(imgsz, (list, tuple)) and len(imgsz) == 1:
        imgsz = imgsz[0]
    if isinstance(imgsz, bool) or not isinstance(imgsz, (int, np.integer)) or imgsz < 1:
        raise InvalidInputError(f"imgsz must be a positive integer (the long side), got {imgsz!r:.80}")
    return max(STRIDE, int(math.ceil(int(imgsz) / STRIDE)) * STRIDE)


def prediction_settings(overrides: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ultralytics keyword arguments -> fastsam settings (device, imgsz, conf, iou, max_det, retina_masks);
    unknown names raise :class:`InvalidInputError` (a typo is not silently ignored)."""
    unknown = sorted(set(overrides) - set(DEFAULTS) - IGNORED)
    if unknown:
        raise InvalidInputError(f"unsupported argument(s) {', '.join(unknown)}; fastsam's FastSAM takes "
                                f"{', '.join(sorted(DEFAULTS))} (and ignores {', '.join(sorted(IGNORED))})")
    settings = {**(DEFAULTS if defaults is None else defaults)}
    settings.update({k: v for k, v in overrides.items() if k in DEFAULTS and v is not None})  # None: default
    settings["device"] = check_device(settings["device"])
    settings["imgsz"] = _imgsz(settings["imgsz"])
    settings["retina_masks"] = bool(settings["retina_masks"])
    return settings


def _view_result(results: Results) -> SegmentationResult:
    """The fastsam result holding exactly the view's instances (the whole result when the view is all of it,
    so that its cached run table is reused)."""
    whole = results.result
    if len(results.indices) == len(whole) and np.array_equal(results.indices, np.arange(len(whole))):
        return whole
    picked = results.indices
    return SegmentationResult(image_size=whole.image_size, boxes=whole.boxes[picked], scores=whole.scores[picked],
                              rles=[whole.rles[i] for i in picked], image=whole.image, source=whole.source)


def prompt_results(results: Results, bboxes: object = None, points: object = None, labels: object = None,
                   texts: object = None, text_model: object = None) -> Results:
    """Ultralytics' prompt rules on one ``Results`` (see the module docstring); coordinates are image pixels,
    truncated to integers as Ultralytics does. ``text_model``: a CLIP folder, model id or scorer (fastsam's
    text prompts; default ``$FASTSAM_CLIP`` or openai/clip-vit-base-patch32)."""
    if bboxes is None and points is None and texts is None:
        if labels is not None:
            raise InvalidInputError("labels were given without points")
        return results
    result = _view_result(results)
    size = result.image_size
    # Validated before the empty case, so that a wrong prompt is reported on every image.
    boxes = None if bboxes is None else np.trunc(check_boxes(bboxes, size))
    if points is not None:
        check_points(points, labels, size)
    elif labels is not None:
        raise InvalidInputError("labels were given without points")
    if len(result) == 0:
        return results
    chosen = np.zeros(len(result), bool)
    if boxes is not None:
        # Ultralytics' IoU divides by the area of the box as given (not clipped to the image).
        for x1, y1, x2, y2 in boxes.astype(np.int64):
            chosen[best_box_instance(result.rles, result.areas, result.mask_bounds, (x1, y1, x2, y2))] = True
    if points is not None:
        pts, labs = check_points(points, labels, size)
        n, p = len(result), len(pts)
        held = result.run_table.holds(np.repeat(np.arange(n), p), np.tile(pts[:, 0], n),
                                      np.tile(pts[:, 1], n)).reshape(n, p)
        by_points = np.full(n, not labs.any())
        for k in range(p):
            by_points[held[:, k]] = bool(labs[k])
        chosen |= by_points
    if texts is not None:
        picks = result.prompt(texts=texts, text_model=text_model, text_crop="box")
        chosen[picks.instance_ids] = True
    return results.new(results.indices[chosen])


class FastSAM:
    """Ultralytics' ``FastSAM`` model: ``FastSAM("FastSAM-s.pt")`` loads a checkpoint (a path, or a zoo name:
    FastSAM-s.pt / FastSAM-x.pt, FastSAM.pt meaning FastSAM-x, downloaded once into fastsam's cache); calling
    it (or ``predict``) segments images and applies prompts, returning one :class:`Results` per image.

    The same class serves the original FastSAM's ``FastSAM(model_path)(source, device=, retina_masks=, imgsz=,
    conf=, iou=)``: its arguments are a subset of these.

    ``keep_logits`` (fastsam's addition) keeps each result's mask prototypes (up to 16 MB at imgsz 1024) so that
    ``result.to_sam_records()`` can give SAM's stability score; False keeps only the run-length masks (the score
    is then None).
    """

    task = "segment"

    def __init__(self, model: str | os.PathLike = "FastSAM-x.pt", *, keep_logits: bool = True) -> None:
        if not isinstance(model, (str, os.PathLike)):
            raise InvalidInputError(f"model must be a checkpoint path or a model name, got {model!r:.80}")
        if str(model) == "FastSAM.pt" and not os.path.exists(model):
            model = "FastSAM-x.pt"
        self.ckpt_path = str(resolve_weights(model))
        self.names = dict(NAMES)
        self.keep_logits = bool(keep_logits)
        self._predictors: dict[torch.device, Predictor] = {}
        self._predictor(torch.device("cpu"))  # load now: a bad checkpoint fails here, as in Ultralytics

    def _predictor(self, device: torch.device) -> Predictor:
        if device not in self._predictors:
            self._predictors[device] = Predictor(load_weights(self.ckpt_path), device=device,
                                                 keep_prototypes=self.keep_logits)
        return self._predictors[device]

    def predict(self, source: Any, stream: bool = False, bboxes: object = None, points: object = None,
                labels: object = None, texts: object = None, text_model: object = None,
                **kwargs: Any) -> list[Results] | Iterator[Results]:
        """Segment ``source`` (a path, a PIL image, a BGR ndarray, or a list of them) and apply the prompts to
        every image. Keywords as Ultralytics': device, imgsz, conf, iou, max_det, retina_masks. ``stream=True``
        returns a generator."""
        settings = prediction_settings(kwargs)
        sources = [source] if is_single_source(source) else source
        if not isinstance(sources, (list, tuple)) or not sources:
            raise InvalidInputError("source must be a path, a PIL image, a BGR ndarray or a non-empty list of them")
        answers = (prompt_results(self._segment(item, k, settings), bboxes, points, labels, texts, text_model)
                   for k, item in enumerate(sources))
        return answers if stream else list(answers)

    __call__ = predict

    def _segment(self, source: Any, index: int, settings: dict[str, Any]) -> Results:
        predictor = self._predictor(settings["device"])
        rgb = bgr_source_to_rgb(source)
        result = predictor(rgb, imgsz=settings["imgsz"], conf=settings["conf"], iou=settings["iou"],
                           max_det=settings["max_det"], retina=settings["retina_masks"])
        if isinstance(source, (str, os.PathLike)):
            result.source = str(source)
        return Results(result, np.ascontiguousarray(rgb[..., ::-1]), source_name(source, index), names=self.names)

    def info(self) -> str:
        """A one-line description of the loaded model."""
        return f"FastSAM (fastsam) from {self.ckpt_path}, default imgsz {DEFAULTS['imgsz']}"


class FastSAMPredictor:
    """Ultralytics' ``FastSAMPredictor(overrides=dict(conf=, imgsz=, model=...))``: call it on a source for the
    all-instance results, then ``prompt(results, bboxes=, points=, labels=, texts=)`` as often as needed
    without running the network again."""

    def __init__(self, cfg: object = None, overrides: dict[str, Any] | None = None, _callbacks: object = None) -> None:
        if overrides is not None and not isinstance(overrides, dict):
            raise InvalidInputError("overrides must be a dict of Ultralytics settings")
        overrides = dict(overrides or {})
        self.model = FastSAM(overrides.get("model", "FastSAM-x.pt"))
        self.args = prediction_settings(overrides)

    def __call__(self, source: Any, stream: bool = False) -> list[Results] | Iterator[Results]:
        settings = {k: v for k, v in self.args.items() if k != "device"}
        return self.model.predict(source, stream=stream, device=self.args["device"], **settings)

    def prompt(self, results: Results | list[Results], bboxes: object = None, points: object = None,
               labels: object = None, texts: object = None, text_model: object = None) -> list[Results]:
        """Ultralytics' prompt rules on cached results (one ``Results`` or a list); one answer per result."""
        items = results if isinstance(results, list) else [results]
        for item in items:
            if not isinstance(item, Results):
                raise InvalidInputError(f"prompt takes the Results this predictor returned, got {type(item).__name__}")
        return [prompt_results(item, bboxes, points, labels, texts, text_model) for item in items]
