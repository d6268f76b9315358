"""Letterboxing: resize keeping the aspect ratio and pad with grey to a stride multiple, as FastSAM's predictor
does (rectangular 'auto' mode, stride 32, padding value 114)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one letterbox: original image (height, width) -> network input (height, width)."""

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    resized_size: tuple[int, int]
    pad_top: int
    pad_left: int


def plan_letterbox(image_size: tuple[int, int], imgsz: int | tuple[int, int], stride: int = 32,
                   rectangular: bool = True) -> Letterbox:
    """Compute the letterbox of an image of ``image_size`` (h, w) for a target ``imgsz`` (the long side, or
    (h, w)). Rectangular mode pads only up to the next multiple of ``stride`` instead of the full square."""
    target_h, target_w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    h, w = image_size
    ratio = min(target_h / h, target_w / w)
    # A very thin image (say 2 x 5000) would round its short side to 0 px: keep at least one pixel.
    new_w, new_h = max(int(round(w * ratio)), 1), max(int(round(h * ratio)), 1)
    pad_w, pad_h = target_w - new_w, target_h - new_h
    if rectangular:
        pad_w, pad_h = pad_w % stride, pad_h % stride
    # An odd padding puts the extra pixel at the bottom/right; the -0.1/+0.1 reproduce the original's rounding.
    top, bottom = int(round(pad_h / 2 - 0.1)), int(round(pad_h / 2 + 0.1))
    left, right = int(round(pad_w / 2 - 0.1)), int(round(pad_w / 2 + 0.1))
    return Letterbox(
        image_size=(h, w),
        input_size=(new_h + top + bottom, new_w + left + right),
        resized_size=(new_h, new_w),
        pad_top=top,
        pad_left=left,
    )


def apply_letterbox(image: np.ndarray, box: Letterbox) -> np.ndarray:
    """(h, w, 3) uint8 image -> (H_in, W_in, 3) uint8 letterboxed image."""
    new_h, new_w = box.resized_size
    if image.shape[:2] != (new_h, new_w):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    in_h, in_w = box.input_size
    return cv2.copyMakeBorder(
        image, box.pad_top, in_h - new_h - box.pad_top, box.pad_left, in_w - new_w - box.pad_left,
        cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )
