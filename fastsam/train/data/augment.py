"""The FastSAM (YOLOv8) training augmentations, on an image and its instance polygons together.

Geometric steps move the polygons' vertices through the very transform the pixels go through and clip them to
the output exactly, so masks rasterised afterwards and boxes recomputed from the polygons stay aligned with the
picture. Every random draw comes from the ``np.random.Generator`` passed in (reproducible per item).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.train.data.polygons import clip_polygon
from fastsam.train.data.sample import Segments, segments_boxes

#: Padding grey of letterboxing and empty canvas, as YOLOv8.
PAD_VALUE = 114


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation hyperparameters; the defaults are YOLOv8's (and so the FastSAM recipe's).

    hsv_*: fractional gain ranges of hue, saturation, value; degrees: rotation range (+/-); translate: shift
    range as a fraction of the output size; scale: zoom range (1 +/- scale); shear in degrees; perspective:
    projective coefficient; flipud / fliplr / mosaic: probabilities; copy_paste: probability that an item gets
    instances of another training image pasted onto it (Simple Copy-Paste; 0, off, by default).
    """

    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    perspective: float = 0.0
    flipud: float = 0.0
    fliplr: float = 0.5
    mosaic: float = 1.0
    copy_paste: float = 0.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidInputError(f"AugmentConfig.{item.name} must be a finite number >= 0, got {value!r}")
        for name in ("flipud", "fliplr", "mosaic", "copy_paste", "translate", "hsv_h", "hsv_s", "hsv_v"):
            if getattr(self, name) > 1:
                raise InvalidInputError(f"AugmentConfig.{name} must be <= 1, got {getattr(self, name)}")
        if self.scale >= 1:
            raise InvalidInputError(f"AugmentConfig.scale must be < 1 (zoom 1 +/- scale), got {self.scale}")


def transform_segments(segments: Segments, matrix: np.ndarray) -> Segments:
    """Every polygon through a 2x3 affine or 3x3 projective matrix."""
    moved = []
    for polygons in segments:
        out = []
        for polygon in polygons:
            points = polygon.astype(np.float64) @ matrix[:2, :2].T + matrix[:2, 2]
            if matrix.shape[0] == 3:
                w = polygon.astype(np.float64) @ matrix[2, :2] + matrix[2, 2]
                points = points / w[:, None]
            out.append(points.astype(np.float32))
        moved.append(out)
    return moved


def clip_segments(segments: Segments, width: float, height: float) -> Segments:
    """Polygons clipped to [0, width] x [0, height]; parts left with no area and then empty instances go."""
    clipped = []
    for polygons in segments:
        parts = [p for p in (clip_polygon(polygon, width, height) for polygon in polygons) if len(p) >= 3]
        clipped.append(parts)
    return clipped


def resize_long_side(image: np.ndarray, segments: Segments, size: int, augment: bool) -> tuple[np.ndarray, Segments]:
    """Scale so that the long side is ``size`` (YOLOv8's image loading); polygons follow."""
    h, w = image.shape[:2]
    ratio = size / max(h, w)
    if ratio != 1:
        new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
        # Shrinking without augmentation averages pixels (sharper val images); otherwise linear, as YOLOv8.
        interpolation = cv2.INTER_AREA if ratio < 1 and not augment else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        scale = np.array([new_w / w, new_h / h], np.float32)
        segments = [[polygon * scale for polygon in polygons] for polygons in segments]
    return image, segments


def letterbox(image: np.ndarray, segments: Segments, size: int) -> tuple[np.ndarray, Segments]:
    """Fit the image in a size x size square (aspect kept, centred, grey padding); polygons follow."""
    h, w = image.shape[:2]
    if max(h, w) != size:
        image, segments = resize_long_side(image, segments, size, augment=False)
        h, w = image.shape[:2]
    top, left = (size - h) // 2, (size - w) // 2
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    canvas[top:top + h, left:left + w] = image
    shift = np.array([left, top], np.float32)
    return canvas, [[polygon + shift for polygon in polygons] for polygons in segments]


def affine_matrix(in_size: tuple[int, int], out_size: int, hyp: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """3x3 matrix of YOLOv8's random perspective: centre the input (width, height), rotate/zoom, shear,
    translate to the output centre plus a random shift."""
    width, height = in_size
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -width / 2, -height / 2
    projective = np.eye(3)
    projective[2, 0], projective[2, 1] = rng.uniform(-hyp.perspective, hyp.perspective, 2)
    rotation = np.eye(3)
    angle, zoom = rng.uniform(-hyp.degrees, hyp.degrees), rng.uniform(1 - hyp.scale, 1 + hyp.scale)
    rotation[:2] = cv2.getRotationMatrix2D((0, 0), angle, zoom)
    shear = np.eye(3)
    shear[0, 1], shear[1, 0] = np.tan(np.radians(rng.uniform(-hyp.shear, hyp.shear, 2)))
    shift = np.eye(3)
    shift[0, 2], shift[1, 2] = rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate, 2) * out_size
    return shift @ shear @ rotation @ projective @ centre


def keep_candidates(before: np.ndarray, after: np.ndarray, min_size: float = 2.0, min_area_ratio: float = 0.1,
                    max_aspect: float = 100.0) -> np.ndarray:
    """(n,) bool: boxes (xyxy) still worth training on after clipping: wider and taller than ``min_size``,
    keeping more than ``min_area_ratio`` of their unclipped area, not too thin."""
    w0, h0 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w1, h1 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w1 / (h1 + 1e-16), h1 / (w1 + 1e-16))
    return (w1 > min_size) & (h1 > min_size) & (w1 * h1 / (w0 * h0 + 1e-16) > min_area_ratio) & (aspect < max_aspect)


def random_affine(image: np.ndarray, segments: Segments, out_size: int, hyp: AugmentConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, Segments]:
    """Warp to out_size x out_size with a random affine (or perspective) transform; polygons go through the
    same matrix, are clipped to the output, and instances that end up tiny, thin or mostly cut off go."""
    matrix = affine_matrix((image.shape[1], image.shape[0]), out_size, hyp, rng)
    if hyp.perspective:
        image = cv2.warpPerspective(image, matrix, (out_size, out_size), borderValue=(PAD_VALUE,) * 3)
    else:
        image = cv2.warpAffine(image, matrix[:2], (out_size, out_size), borderValue=(PAD_VALUE,) * 3)
    moved = transform_segments(segments, matrix if hyp.perspective else matrix[:2])
    before = np.array([[*np.concatenate(p).min(0), *np.concatenate(p).max(0)] for p in moved], np.float32)
    clipped = clip_segments(moved, out_size, out_size)
    keep = np.zeros(len(clipped), bool)
    present = [k for k, parts in enumerate(clipped) if parts]
    if present:
        after = segments_boxes([clipped[k] for k in present], out_size, out_size)
        keep[present] = keep_candidates(before[present], after)
    return image, [parts for parts, kept in zip(clipped, keep) if kept]


def augment_hsv(image: np.ndarray, hyp: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Random hue, saturation and value gains (RGB uint8 in, RGB uint8 out), through lookup tables."""
    gains = rng.uniform(-1, 1, 3) * (hyp.hsv_h, hyp.hsv_s, hyp.hsv_v) + 1
    if not (hyp.hsv_h or hyp.hsv_s or hyp.hsv_v):
        return image
    hue, saturation, value = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    levels = np.arange(256, dtype=np.float64)
    lut_hue = ((levels * gains[0]) % 180).astype(np.uint8)  # OpenCV's 8-bit hue is 0..179
    lut_saturation = np.clip(levels * gains[1], 0, 255).astype(np.uint8)
    lut_value = np.clip(levels * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(saturation, lut_saturation), cv2.LUT(value, lut_value)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def flip(image: np.ndarray, segments: Segments, horizontal: bool) -> tuple[np.ndarray, Segments]:
    """Mirror left-right (``horizontal``) or top-bottom; polygons follow (x -> width - x)."""
    axis = 0 if horizontal else 1
    extent = image.shape[1 - axis]
    image = cv2.flip(image, 1 if horizontal else 0)
    flipped = []
    for polygons in segments:
        out = []
        for polygon in polygons:
            polygon = polygon.copy()
            polygon[:, axis] = extent - polygon[:, axis]
            out.append(polygon)
        flipped.append(out)
    return image, flipped


def random_flips(image: np.ndarray, segments: Segments, hyp: AugmentConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, Segments]:
    """Top-bottom flip with probability flipud, then left-right with probability fliplr."""
    if rng.random() < hyp.flipud:
        image, segments = flip(image, segments, horizontal=False)
    if rng.random() < hyp.fliplr:
        image, segments = flip(image, segments, horizontal=True)
    return image, segments
