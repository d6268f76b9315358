"""Text prompts: pick the instances of a cached result that match a description ("the yellow dog").

Each instance (mask area above :data:`MIN_TEXT_AREA` pixels) becomes a crop: its mask's bounding box, with
the pixels outside the mask painted white (``crop="mask"``, the default) or left as they are (``crop="box"``).
An image-text scorer (CLIP by default) gives the cosine similarity of every crop with every text, all crops in
batches. Two scores per (instance, text) are kept, see :class:`TextScores`:

* ``cosine``: the raw cosine similarity of the crop and text embeddings, in [-1, 1]. It does not depend on the
  other instances, so it is the one to threshold when asking for *every* instance that matches.
* ``probability``: the original FastSAM score, a softmax over the scored instances of ``100 * cosine``, per
  text. It sums to 1 over the instances, so it ranks instances well but splits between several matches.

Selection per text (:func:`pick_instances`): ``best`` (the original's behaviour, one instance), ``topk`` (the
``top_k`` best) or ``threshold`` (every instance whose score, cosine by default, is at least ``threshold``).
``wider=True`` then replaces each pick with the largest instance that holds more than 90% of its pixels.

The scorer is anything with ``score(images, texts) -> (n_images, n_texts)`` cosine similarities
(:class:`ImageTextScorer`); :class:`CLIPScorer` wraps a Hugging Face ``transformers`` CLIP model and
:func:`load_clip_scorer` loads one once per (source, device) and keeps it for later prompts.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np

from fastsam.errors import FastSAMError, InvalidInputError, MissingDependencyError, ModelNotFoundError
from fastsam.extras import install_hint
from fastsam.prompts.selection import Selection
from fastsam.rle import RunLengthMask

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from fastsam.result import SegmentationResult

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
CLIP_ENV = "FASTSAM_CLIP"  # a folder or model id used when no text model is given
MIN_TEXT_AREA = 100  # masks of at most this many pixels are not scored (as the original)
SOFTMAX_SCALE = 100.0  # probability = softmax(SOFTMAX_SCALE * cosine) over instances, as the original
DEFAULT_COSINE_THRESHOLD = 0.25  # a starting point for OpenAI CLIP ViT-B/32; tune it for your images and texts
WIDER_FRACTION = 0.9  # wider: the replacement must hold more than this fraction of the pick's pixels
TEXT_MODES = ("best", "topk", "threshold")
CROP_MODES = ("mask", "box")
METRICS = ("cosine", "probability")
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "FASTSAM_OFFLINE")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@runtime_checkable
class ImageTextScorer(Protocol):
    """Anything that scores images against texts.

    ``score(images, texts)``: images are (H, W, 3) uint8 RGB arrays of any sizes, texts non-empty strings;
    returns an (n_images, n_texts) float array of cosine similarities (higher = better match).
    """

    def score(self, images: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray: ...


# ------------------------------------------------------------------------------------------------- CLIP
def _features(output: Any) -> "torch.Tensor":
    # transformers 4 returns the projected embeddings; 5 returns a model output holding them as pooler_output.
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    return pooled if pooled is not None else output[1]


class CLIPScorer:
    """Cosine similarities from a Hugging Face CLIP model (``CLIPModel`` and its ``CLIPProcessor``).

    Images go through the processor (resize, centre crop, normalise) and the vision tower ``batch_size`` at a
    time. Text embeddings are remembered (the last 256 texts), so repeating a text costs nothing.
    """

    def __init__(self, model: Any, processor: Any, device: str | "torch.device" = "cpu", batch_size: int = 32,
                 source: str | None = None):
        import torch

        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.batch_size = batch_size
        self.source = source
        self._texts: OrderedDict[str, np.ndarray] = OrderedDict()
        text_config = getattr(model.config, "text_config", None)
        self._max_tokens = int(getattr(text_config, "max_position_embeddings", 77) or 77)  # longer texts are cut
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CLIPScorer(source={self.source!r}, device='{self.device}', batch_size={self.batch_size})"

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, d) float32 unit-length image embeddings."""
        import torch
        from PIL import Image

        dim = int(getattr(self.model.config, "projection_dim", 0))
        if len(images) == 0:
            return np.zeros((0, dim), np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = [Image.fromarray(np.ascontiguousarray(im, dtype=np.uint8)) for im in
                         images[start:start + self.batch_size]]
                pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
                features = _features(self.model.get_image_features(pixel_values=pixels.to(self.device)))
                out.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(t, d) float32 unit-length text embeddings (padding in a batch does not change them)."""
        import torch

        with self._lock:
            known = {t: self._texts[t] for t in texts if t in self._texts}
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            with torch.inference_mode():
                tokens = self.processor(text=missing, padding=True, truncation=True, max_length=self._max_tokens,
                                        return_tensors="pt")
                tokens = {k: v.to(self.device) for k, v in tokens.items()}
                features = _features(self.model.get_text_features(**tokens))
                embedded = torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()
            known.update((text, vector.astype(np.float32)) for text, vector in zip(missing, embedded))
            with self._lock:
                for text in missing:
                    self._texts[text] = known[text]
                    self._texts.move_to_end(text)
                while len(self._texts) > 256:
                    self._texts.popitem(last=False)
        return np.stack([known[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)

    def score(self, images: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray:
        """(n_images, n_texts) cosine similarities."""
        text_emb = self.embed_texts(list(texts))
        image_emb = self.embed_images(images)
        if image_emb.shape[0] == 0 or text_emb.shape[0] == 0:
            return np.zeros((image_emb.shape[0], text_emb.shape[0]), np.float32)
        return image_emb @ text_emb.T


_SCORERS: dict[tuple[str, str], CLIPScorer] = {}
_SCORERS_LOCK = threading.Lock()


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in _OFFLINE_ENV)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens (so an unreachable hub fails fast instead
    of through huggingface_hub's retries)."""
    from urllib.parse import urlsplit

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # through a proxy: let huggingface_hub try
    parts = urlsplit(_hub_endpoint())
    host = parts.hostname
    if not host:
        return False
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _provide_help(source: str) -> str:
    model_id = source if _HUB_ID.match(source) and not Path(source).expanduser().exists() else DEFAULT_CLIP_MODEL
    return (
        "to provide a local copy, on a machine with internet access run: python -c \"from transformers import "
        f"CLIPModel, CLIPProcessor; m = '{model_id}'; CLIPModel.from_pretrained(m).save_pretrained('clip'); "
        "CLIPProcessor.from_pretrained(m).save_pretrained('clip')\" then copy the 'clip' folder here and pass it "
        f"as the text model (--text-model clip, text_model='clip', or set {CLIP_ENV}=clip)"
    )


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"text prompts need the 'transformers' package: {install_hint('text')} (or pip install "
            "transformers)") from exc
    return transformers


def resolve_clip_source(source: str | os.PathLike | None = None) -> tuple[str, bool]:
    """(what to load, whether it is a local folder): ``source``, else ``$FASTSAM_CLIP``, else
    :data:`DEFAULT_CLIP_MODEL`. A missing folder, or a file, is reported here."""
    if source is None:
        source = os.environ.get(CLIP_ENV, "").strip() or DEFAULT_CLIP_MODEL
    text = os.fspath(source)
    if not text.strip():
        raise InvalidInputError("the text model is an empty string; give a folder or a Hugging Face model id")
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} does not hold a saved CLIP model (no config.json); "
                                     + _provide_help(DEFAULT_CLIP_MODEL))
        return str(path.resolve()), True
    if path.exists():
        raise ModelNotFoundError(f"{path} is a file; the text model must be a folder written by save_pretrained "
                                 "(or a Hugging Face model id)")
    if not _HUB_ID.match(text) or text.startswith((".", "~")) or isinstance(source, Path):
        raise ModelNotFoundError(f"no CLIP model folder at {path}; " + _provide_help(DEFAULT_CLIP_MODEL))
    return text, False


def _load_pretrained(transformers: Any, name: str, local_only: bool) -> tuple[Any, Any]:
    model = transformers.CLIPModel.from_pretrained(name, local_files_only=local_only)
    processor = transformers.CLIPProcessor.from_pretrained(name, local_files_only=local_only)
    return model, processor


def load_clip_scorer(source: str | os.PathLike | None = None, device: str | "torch.device" | None = None,
                     batch_size: int = 32) -> CLIPScorer:
    """A :class:`CLIPScorer` for a local folder (written by ``save_pretrained``) or a Hugging Face model id,
    loaded once per (source, device) and cached in this module (:func:`clear_clip_cache` forgets them).

    With no source: ``$FASTSAM_CLIP``, else ``openai/clip-vit-base-patch32``. A model id is taken from the
    Hugging Face cache when it is there, else downloaded, unless HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or
    FASTSAM_OFFLINE is set or the hub cannot be reached. ``batch_size`` (images per forward pass) is updated
    on the cached scorer. Raises :class:`~fastsam.errors.ModelNotFoundError` (saying how to provide a local copy)
    when the model cannot be found, and :class:`MissingDependencyError` without ``transformers``.
    """
    import torch

    name, local = resolve_clip_source(source)
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(f"unknown torch device {device!r}") from exc
    key = (name, str(dev))
    with _SCORERS_LOCK:
        cached = _SCORERS.get(key)
        if cached is not None:
            cached.batch_size = batch_size
            return cached
        transformers = _import_transformers()
        try:
            model, processor = _load_pretrained(transformers, name, True)  # a folder, or the Hugging Face cache
        except (OSError, ValueError) as exc:
            if local:
                raise ModelNotFoundError(f"cannot load the CLIP model in {name}: {_first_line(exc)}; "
                                         + _provide_help(DEFAULT_CLIP_MODEL)) from exc
            if _offline():
                raise ModelNotFoundError(
                    f"no folder named {name!r} here, and the model id {name!r} is not in the Hugging Face cache "
                    f"while offline mode is set ({'/'.join(_OFFLINE_ENV)}); " + _provide_help(name)) from exc
            if not _hub_reachable():
                raise ModelNotFoundError(
                    f"no folder named {name!r} here, the model id {name!r} is not in the Hugging Face cache, and "
                    f"{_hub_endpoint()} cannot be reached to download it; " + _provide_help(name)) from exc
            try:
                model, processor = _load_pretrained(transformers, name, False)
            except Exception as exc2:  # noqa: BLE001 - any download / hub failure becomes one clear message
                raise ModelNotFoundError(
                    f"cannot download the CLIP model {name!r}: {_first_line(exc2)}; " + _provide_help(name)) from exc2
        scorer = CLIPScorer(model, processor, device=dev, batch_size=batch_size, source=name)
        _SCORERS[key] = scorer
        return scorer


def clear_clip_cache() -> None:
    """Forget every CLIP model loaded by :func:`load_clip_scorer`."""
    with _SCORERS_LOCK:
        _SCORERS.clear()


def resolve_scorer(model: ImageTextScorer | str | os.PathLike | None = None,
                   device: str | "torch.device" | None = None) -> ImageTextScorer:
    """A scorer object as is; a folder, model id or None through :func:`load_clip_scorer`."""
    if model is not None and not isinstance(model, (str, os.PathLike)):
        if not callable(getattr(model, "score", None)):
            raise InvalidInputError(f"the text model must be a folder, a model id or an object with a "
                                    f"score(images, texts) method, got {type(model).__name__}")
        return model
    return load_clip_scorer(model, device=device)


# ----------------------------------------------------------------------------------------------- crops
def check_texts(texts: object) -> list[str]:
    """One string or a sequence of strings -> list of stripped, non-empty texts."""
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        raise InvalidInputError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise InvalidInputError("texts is empty; give at least one text")
    out = []
    for k, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"text {k} must be a string, got {type(text).__name__}")
        if not text.strip():
            raise InvalidInputError(f"text {k} is empty; describe what to select, e.g. 'a yellow dog'")
        out.append(text.strip())
    return out


def instance_crops(image: np.ndarray, rles: Sequence[RunLengthMask], areas: np.ndarray, bounds: np.ndarray,
                   crop: str = "mask", min_area: int = MIN_TEXT_AREA) -> tuple[np.ndarray, list[np.ndarray]]:
    """(instance indices, crops) for the instances of more than ``min_area`` pixels.

    A crop is image[y1:y2, x1:x2] over the mask's tight box; with ``crop="mask"`` the pixels outside the mask
    are white. Only the box of each mask is decoded.
    """
    if crop not in CROP_MODES:
        raise InvalidInputError(f"crop must be one of {', '.join(CROP_MODES)}, got {crop!r}")
    ids = np.flatnonzero(np.asarray(areas) > min_area)
    crops = []
    for n in ids:
        x1, y1, x2, y2 = (int(v) for v in bounds[n])
        piece = np.array(image[y1:y2, x1:x2, :3], dtype=np.uint8, copy=True)
        if crop == "mask":
            piece[~rles[n].decode_region(x1, y1, x2, y2)] = 255
        crops.append(piece)
    return ids.astype(np.int64), crops


# ---------------------------------------------------------------------------------------------- scores
@dataclass
class TextScores:
    """Scores of the scored instances against each text.

    instance_ids (M,): the instances that were scored (area above the minimum), in instance order; row m of
    ``cosine`` and ``probability`` (both (M, T) float32) is instance ``instance_ids[m]``. ``probability`` is
    the softmax over the M instances of ``100 * cosine``, per text (each column sums to 1).
    """

    texts: list[str]
    instance_ids: np.ndarray
    cosine: np.ndarray
    probability: np.ndarray
    num_instances: int = 0

    @classmethod
    def from_cosine(cls, texts: list[str], instance_ids: np.ndarray, cosine: np.ndarray,
                    num_instances: int = 0) -> "TextScores":
        cosine = np.asarray(cosine, dtype=np.float32).reshape(len(instance_ids), len(texts))
        if cosine.shape[0]:
            logits = SOFTMAX_SCALE * cosine.astype(np.float64)
            logits -= logits.max(axis=0, keepdims=True)
            weights = np.exp(logits)
            probability = (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)
        else:
            probability = np.zeros_like(cosine)
        return cls(list(texts), np.asarray(instance_ids, np.int64), cosine, probability, int(num_instances))

    def metric(self, name: str) -> np.ndarray:
        if name not in METRICS:
            raise InvalidInputError(f"text metric must be one of {', '.join(METRICS)}, got {name!r}")
        return self.cosine if name == "cosine" else self.probability

    def full(self, name: str = "cosine") -> np.ndarray:
        """(num_instances, T) scores indexed by instance; NaN for instances that were not scored."""
        out = np.full((max(self.num_instances, int(self.instance_ids.max(initial=-1)) + 1), len(self.texts)),
                      np.nan, np.float32)
        out[self.instance_ids] = self.metric(name)
        return out

    def to_dict(self) -> dict:
        """JSON-ready: ``{'texts': [...], 'instance_ids': [...], 'cosine': [[...]], 'probability': [[...]]}``."""
        return {"texts": list(self.texts), "instance_ids": self.instance_ids.tolist(),
                "cosine": self.cosine.round(6).tolist(), "probability": self.probability.round(6).tolist()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def score_texts(image: np.ndarray, rles: Sequence[RunLengthMask], areas: np.ndarray, bounds: np.ndarray,
                texts: list[str], scorer: ImageTextScorer, crop: str = "mask",
                min_area: int = MIN_TEXT_AREA) -> TextScores:
    """Crop every instance above ``min_area`` pixels and score all crops against all texts in one call."""
    ids, crops = instance_crops(image, rles, areas, bounds, crop=crop, min_area=min_area)
    if not crops:
        return TextScores.from_cosine(texts, ids, np.zeros((0, len(texts)), np.float32), len(rles))
    cosine = np.asarray(scorer.score(crops, texts), dtype=np.float32)
    if cosine.shape != (len(crops), len(texts)):
        raise FastSAMError(f"the text scorer returned scores of shape {cosine.shape}; expected "
                           f"({len(crops)}, {len(texts)}) (images x texts)")
    if not np.isfinite(cosine).all():
        raise FastSAMError("the text scorer returned NaN or infinite scores")
    return TextScores.from_cosine(texts, ids, cosine, len(rles))


# ------------------------------------------------------------------------------------------- selection
def _check_mode(mode: str | None, top_k: int | None, threshold: float | None,
                metric: str | None) -> tuple[str, int | None, float | None, str]:
    if mode is None:
        mode = "threshold" if threshold is not None else "topk" if top_k is not None else "best"
    if mode not in TEXT_MODES:
        raise InvalidInputError(f"text mode must be one of {', '.join(TEXT_MODES)}, got {mode!r}")
    if metric is None:
        metric = "cosine" if mode == "threshold" else "probability"
    if metric not in METRICS:
        raise InvalidInputError(f"text metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise InvalidInputError(f"top_k must be a positive integer, got {top_k!r}")
    if mode == "best":
        top_k = 1
    elif mode == "topk" and top_k is None:
        raise InvalidInputError("text mode 'topk' needs top_k (how many instances per text)")
    if mode == "threshold":
        if threshold is None:
            if metric == "probability":
                raise InvalidInputError("give a threshold for the probability metric (e.g. 0.1)")
            threshold = DEFAULT_COSINE_THRESHOLD
        try:
            threshold = float(threshold)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"threshold must be a number, got {threshold!r}") from exc
        if not np.isfinite(threshold):
            raise InvalidInputError(f"threshold must be finite, got {threshold}")
    return mode, None if top_k is None else int(top_k), threshold, metric


def pick_instances(scores: TextScores, mode: str | None = None, top_k: int | None = None,
                   threshold: float | None = None, metric: str | None = None) -> list[list[tuple[int, float]]]:
    """Per text, the chosen (instance index, score) pairs, best first (ties: lowest instance index).

    best: the single best instance; topk: the ``top_k`` best; threshold: every instance whose ``metric`` score
    is >= ``threshold`` (at most ``top_k`` of them when given). ``metric`` (the score reported and, in
    threshold mode, compared) defaults to cosine in threshold mode and to probability otherwise; both rank
    the instances the same way. With no mode, ``threshold`` implies threshold and ``top_k`` implies topk.
    """
    mode, top_k, threshold, metric = _check_mode(mode, top_k, threshold, metric)
    values = scores.metric(metric)
    picks = []
    for t in range(len(scores.texts)):
        column = values[:, t]
        order = np.argsort(-column, kind="stable")
        if mode == "threshold":
            order = order[column[order] >= threshold]
        if top_k is not None:
            order = order[:top_k]
        picks.append([(int(scores.instance_ids[m]), float(column[m])) for m in order])
    return picks


def widen(index: int, rles: Sequence[RunLengthMask], areas: np.ndarray, bounds: np.ndarray,
          fraction: float = WIDER_FRACTION) -> int:
    """The largest instance holding more than ``fraction`` of instance ``index``'s pixels (``index`` itself
    unless a larger one does; ties: lowest index). Only larger masks whose boxes overlap enough are decoded,
    and only inside the box of ``index``."""
    area = int(areas[index])
    if area == 0:
        return index
    x1, y1, x2, y2 = (int(v) for v in bounds[index])
    ix = np.minimum(bounds[:, 2], x2) - np.maximum(bounds[:, 0], x1)
    iy = np.minimum(bounds[:, 3], y2) - np.maximum(bounds[:, 1], y1)
    box_overlap = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    candidates = np.flatnonzero((areas > area) & (box_overlap > fraction * area))
    if candidates.size == 0:
        return index
    target = rles[index].decode_region(x1, y1, x2, y2)
    best, best_area = index, area
    for n in sorted(candidates, key=lambda i: (-int(areas[i]), int(i))):
        if int(areas[n]) <= best_area:
            break
        held = int((target & rles[n].decode_region(x1, y1, x2, y2)).sum())
        if held > fraction * area:
            best, best_area = int(n), int(areas[n])
            break
    return best


class TextPromptAnswer(NamedTuple):
    selection: Selection
    scores: TextScores


def text_prompt(result: "SegmentationResult", texts: object, model: ImageTextScorer | str | os.PathLike | None = None,
                mode: str | None = None, top_k: int | None = None, threshold: float | None = None,
                metric: str | None = None, crop: str = "mask", wider: bool = False,
                device: str | None = None, image: np.ndarray | None = None,
                min_area: int = MIN_TEXT_AREA) -> TextPromptAnswer:
    """Select instances of ``result`` matching each text; returns the selection and every score.

    texts: one string or several. model: a scorer object, a CLIP folder or model id (None: ``$FASTSAM_CLIP``
    or ``openai/clip-vit-base-patch32``), loaded once and cached. mode / top_k / threshold / metric: see
    :func:`pick_instances` (the threshold applies to the cosine similarity unless ``metric='probability'``).
    crop: 'mask' (outside the mask painted white) or 'box' (plain bounding box). wider: see :func:`widen`.
    image: the (H, W, 3) RGB image when the result does not keep one.

    The selection holds, text by text, the picks best first, with prompt ``"text k: '...'"``, the instance id
    and the ``metric`` score; a text with no match adds nothing (as does a result with no instance, in which
    case no model is loaded).
    """
    texts = check_texts(texts)
    mode, top_k, threshold, metric = _check_mode(mode, top_k, threshold, metric)
    if crop not in CROP_MODES:
        raise InvalidInputError(f"crop must be one of {', '.join(CROP_MODES)}, got {crop!r}")
    image = result.image if image is None else image
    if image is None:
        raise InvalidInputError("text prompts need the image, and this result keeps none (the predictor ran with "
                                "keep_image=False); pass image= or keep the image")
    image = np.asarray(image)
    h, w = result.image_size
    if image.ndim != 3 or image.shape[:2] != (h, w) or image.shape[2] < 3 or image.dtype != np.uint8:
        raise InvalidInputError(f"the image must be ({h}, {w}, 3) uint8 RGB to match the result, got "
                                f"{image.shape} {image.dtype}")
    selection = Selection(result.image_size)
    if len(result) == 0:
        empty = TextScores.from_cosine(texts, np.zeros(0, np.int64), np.zeros((0, len(texts))), 0)
        return TextPromptAnswer(selection, empty)
    scorer = resolve_scorer(model, device=device)
    areas, bounds = result.areas, result.mask_bounds
    scores = score_texts(image, result.rles, areas, bounds, texts, scorer, crop=crop, min_area=min_area)
    for t, picks in enumerate(pick_instances(scores, mode, top_k, threshold, metric)):
        seen: set[int] = set()
        for index, value in picks:
            if wider:
                index = widen(index, result.rles, areas, bounds)
            if index in seen:
                continue
            seen.add(index)
            selection.add(result.rles[index], index, f"text {t}: {texts[t]!r}", value)
    return TextPromptAnswer(selection, scores)


# ------------------------------------------------------------------------------- random CLIP (no downloads)
def _byte_symbols() -> list[str]:
    # Byte-level BPE alphabet: printable Latin-1 bytes stand for themselves, the others for code points 256+.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = [], 0
    for b in range(256):
        if b in printable:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def build_random_clip(folder: str | os.PathLike, vision: dict | None = None, text: dict | None = None,
                      projection_dim: int | None = None, seed: int = 0) -> Path:
    """Write a randomly initialised CLIP model and processor to ``folder`` without downloading anything,
    for tests and benchmarks. The tokenizer is byte-level BPE over single bytes (plus end-of-word forms);
    ``vision`` / ``text`` override ``CLIPVisionConfig`` / ``CLIPTextConfig`` fields (defaults: ViT-B/32 sizes).
    The image processor resizes to the vision tower's ``image_size``."""
    transformers = _import_transformers()
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    vocab = {token: k for k, token in enumerate(tokens)}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    size = len(vocab)
    text_config = {"vocab_size": size, "bos_token_id": size - 2, "eos_token_id": size - 1, "pad_token_id": size - 1,
                   **(text or {})}
    config_kwargs = {"text_config": text_config, "vision_config": dict(vision or {})}
    if projection_dim is not None:
        config_kwargs["projection_dim"] = projection_dim
    config = transformers.CLIPConfig(**config_kwargs)
    torch.manual_seed(seed)
    transformers.CLIPModel(config).save_pretrained(folder)
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                           model_max_length=int(config.text_config.max_position_embeddings))
    side = int(config.vision_config.image_size)
    try:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # transformers 4
        ImageProcessor = transformers.CLIPImageProcessor
    image_processor = ImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
