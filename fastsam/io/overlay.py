"""Drawing masks, prompts and outlines over an image, in the manner of the original FastSAM plot.

Masks are painted one at a time inside their bounding boxes into one plane of mask indices, larger masks
first so the smallest ends on top, then coloured and blended once over the image; memory stays at a few
(H, W) planes for any number of masks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

import cv2
import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.io.export import atomic_write_bytes
from fastsam.prompts.selection import Selection
from fastsam.prompts.validation import check_boxes, check_points
from fastsam.rle import RunLengthMask

MaskSource = Union[Selection, Any, Sequence[RunLengthMask]]

CONTOUR_COLOR = (0, 0, 255)  # RGB
CONTOUR_ALPHA = 0.8
CONTOUR_THICKNESS = 2
FOREGROUND_COLOR = (255, 255, 0)  # yellow
BACKGROUND_COLOR = (255, 0, 255)  # magenta
BOX_COLOR = (0, 0, 255)
BOX_THICKNESS = 2
OVERLAY_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}

_CLOSE_KERNEL = np.ones((3, 3), np.uint8)
_OPEN_KERNEL = np.ones((8, 8), np.uint8)
# Margin around a mask's box when cleaning edges: wider than both kernels, so the clean-up inside the crop
# equals the clean-up of the full mask.
_CLEAN_PAD = 10


def point_radius(height: int, width: int) -> int:
    """Radius in pixels of a drawn prompt point: grows with the image, at least 3."""
    return max(3, int(round(max(height, width) / 200)))


def _mask_list(masks: object, image_size: tuple[int, int] | None) -> tuple[list[RunLengthMask], tuple[int, int]]:
    if not isinstance(masks, Selection) and callable(getattr(masks, "everything", None)):
        masks = masks.everything()  # type: ignore[union-attr]
    if isinstance(masks, Selection):
        rles, size = list(masks.masks), tuple(int(v) for v in masks.image_size)
    elif isinstance(masks, (list, tuple)):
        rles = list(masks)
        if image_size is None:
            raise InvalidInputError("an image is needed to draw a list of masks on")
        size = image_size
    else:
        raise InvalidInputError(
            f"masks must be a Selection, SegmentationResult or list of RunLengthMask, got {type(masks).__name__}")
    for k, rle in enumerate(rles):
        if not isinstance(rle, RunLengthMask):
            raise InvalidInputError(f"mask {k} is a {type(rle).__name__}, not a RunLengthMask")
        if rle.size != size:
            raise InvalidInputError(f"mask {k} is {rle.width}x{rle.height} but the image is {size[1]}x{size[0]}")
    return rles, size  # type: ignore[return-value]


def _check_image(image: object, size: tuple[int, int] | None) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"image must be an (H, W, 3) uint8 RGB array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InvalidInputError(f"image must be an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}")
    if size is not None and image.shape[:2] != tuple(size):
        raise InvalidInputError(
            f"image is {image.shape[1]}x{image.shape[0]} but the masks are {size[1]}x{size[0]}; draw on the "
            "image that was segmented")
    return image


def _colors(count: int, color: object, seed: object) -> np.ndarray:
    """(count, 3) uint8 RGB: the fixed ``color`` for all (or a (count, 3) array, one per mask), or random per
    mask from ``seed``."""
    if color is not None:
        try:
            fixed = np.asarray(color, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"color must be three numbers in [0, 255], got {color!r:.80}") from exc
        if fixed.shape not in ((3,), (count, 3)) or not np.isfinite(fixed).all() or (fixed < 0).any() \
                or (fixed > 255).any():
            raise InvalidInputError(f"color must be three numbers (R, G, B) in [0, 255], or one such triple per "
                                    f"mask, got {color!r:.80}")
        return np.broadcast_to(np.round(fixed).astype(np.uint8), (count, 3))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InvalidInputError(f"seed must be a non-negative integer or None, got {seed!r:.80}")
    return np.random.default_rng(seed).integers(0, 256, size=(count, 3), dtype=np.uint8)


def _check_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not np.isfinite(alpha) or not 0.0 <= alpha <= 1.0:
        raise InvalidInputError(f"alpha must be a number in [0, 1], got {alpha!r:.80}")
    return float(alpha)


def _mask_crop(rle: RunLengthMask, clean_edges: bool) -> tuple[np.ndarray, int, int] | None:
    """(h, w) boolean crop of the mask and its top-left (x0, y0); None when empty."""
    x1, y1, x2, y2 = rle.bbox()
    if x2 <= x1 or y2 <= y1:
        return None
    if clean_edges:
        x1, y1 = max(x1 - _CLEAN_PAD, 0), max(y1 - _CLEAN_PAD, 0)
        x2, y2 = min(x2 + _CLEAN_PAD, rle.width), min(y2 + _CLEAN_PAD, rle.height)
        crop = rle.decode_region(x1, y1, x2, y2).astype(np.uint8)
        crop = cv2.morphologyEx(crop, cv2.MORPH_CLOSE, _CLOSE_KERNEL)
        crop = cv2.morphologyEx(crop, cv2.MORPH_OPEN, _OPEN_KERNEL)
        if not crop.any():
            return None
        return crop.astype(bool), x1, y1
    return rle.decode_region(x1, y1, x2, y2), x1, y1


def _blend(pixels: np.ndarray, color: Sequence[int], alpha: float) -> np.ndarray:
    mixed = pixels.astype(np.float32) * (1.0 - alpha) + np.asarray(color, np.float32) * alpha
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def draw_overlay(image: np.ndarray | None, masks: MaskSource, points: object = None, labels: object = None,
                 boxes: object = None, contours: bool = False, clean_edges: bool = False,
                 color: Sequence[float] | None = None, seed: int | None = 0, alpha: float = 0.6) -> np.ndarray:
    """Masks (and prompts) drawn over ``image``; returns a new (H, W, 3) uint8 RGB array.

    image: (H, W, 3) uint8 RGB of the masks' size (None takes ``masks.image`` of a SegmentationResult).
    Each mask gets a random colour from ``seed`` (or the fixed RGB ``color``, or ``color[k]`` for mask k when
    it is a (K, 3) array) blended at ``alpha``; where masks overlap the smallest is shown. contours: outline
    every mask in blue; clean_edges: morphological close (3x3) then open (8x8) of each mask first. points:
    (P, 2) (x, y) pixels with labels (P,) 1 foreground (yellow) / 0 background (magenta); boxes: (M, 4) xyxy
    pixels drawn as blue rectangles.
    """
    if image is None:
        image = getattr(masks, "image", None)
        if image is None:
            raise InvalidInputError("no image to draw on: pass the image (the result did not keep it)")
    if isinstance(masks, (list, tuple)):
        image = _check_image(image, None)
        rles, size = _mask_list(masks, image.shape[:2])
    else:
        rles, size = _mask_list(masks, None)
        image = _check_image(image, size)
    alpha = _check_alpha(alpha)
    colors = _colors(len(rles), color, seed)
    h, w = size
    out = image.copy()

    if rles:
        # Paint which mask owns each pixel (1-based; 0 none), then colour and blend once: per-pixel
        # painting of one integer plane is several times faster than painting three colour channels.
        owner = np.zeros((h, w), np.uint16 if len(rles) < 65535 else np.uint32)
        outline = np.zeros((h, w), np.uint8) if contours else None
        order = np.argsort(-np.array([r.area for r in rles], np.int64), kind="stable")
        for k in order:
            found = _mask_crop(rles[k], clean_edges)
            if found is None:
                continue
            crop, x0, y0 = found
            ch, cw = crop.shape
            np.copyto(owner[y0:y0 + ch, x0:x0 + cw], k + 1, where=crop, casting="unsafe")
            if outline is not None:
                found_contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE,
                                                     offset=(x0, y0))
                cv2.drawContours(outline, found_contours, -1, 255, CONTOUR_THICKNESS)
        palette = np.concatenate([np.zeros((1, 3), np.uint8), colors])
        layer = palette[owner]
        blended = cv2.addWeighted(image, 1.0 - alpha, layer, alpha, 0.0)
        del layer
        covered = owner > 0
        out[covered] = blended[covered]
        del blended, owner, covered
        if outline is not None:
            on_outline = outline > 0
            out[on_outline] = _blend(out[on_outline], CONTOUR_COLOR, CONTOUR_ALPHA)

    if boxes is not None:
        for x1, y1, x2, y2 in check_boxes(boxes, size):
            cv2.rectangle(out, (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2))), BOX_COLOR,
                          BOX_THICKNESS)
    if points is not None:
        pts, labs = check_points(points, labels, size)
        radius = point_radius(h, w)
        for (x, y), label in zip(pts, labs):
            fill = FOREGROUND_COLOR if label == 1 else BACKGROUND_COLOR
            cv2.circle(out, (int(x), int(y)), radius, fill, thickness=-1, lineType=cv2.LINE_AA)
    elif labels is not None:
        raise InvalidInputError("labels were given without points")
    return out


def save_overlay(path: str | os.PathLike, image: np.ndarray | None, masks: MaskSource, **kwargs: Any) -> Path:
    """Draw :func:`draw_overlay` (same keyword arguments) and write it to ``path`` (.png, .jpg, ...),
    atomically, creating parent folders; returns the path."""
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise InvalidInputError(f"path must be a file path, got {path!r:.80}")
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in OVERLAY_SUFFIXES:
        raise InvalidInputError(
            f"cannot write an overlay as {suffix or 'a file without suffix'!r}; use one of {sorted(OVERLAY_SUFFIXES)}")
    picture = draw_overlay(image, masks, **kwargs)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(picture[..., ::-1]), params)
    if not ok:
        raise InvalidInputError(f"OpenCV cannot encode the overlay as {suffix}")
    return atomic_write_bytes(target, encoded.tobytes())
