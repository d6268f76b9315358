"""Images as the original FastSAM and Ultralytics read them: NumPy arrays are BGR (OpenCV's order)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from fastsam.errors import InvalidInputError
from fastsam.io.image import ImageSource, load_image


def bgr_source_to_rgb(source: object) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a path, encoded bytes, a PIL image or a **BGR** (or BGRA / grey) ndarray.

    Both original APIs take arrays as OpenCV gives them; fastsam's own API takes RGB arrays, so only the array
    case differs from :func:`fastsam.io.image.load_image` (which validates every case the same way).
    """
    if isinstance(source, np.ndarray):
        if source.ndim == 3 and source.shape[2] in (3, 4):
            source = source[..., 2::-1]  # BGR(A) -> RGB; the alpha channel is dropped as OpenCV's reader does
        return load_image(source)
    if isinstance(source, (str, os.PathLike, bytes, bytearray, Image.Image)):
        return load_image(source)
    raise InvalidInputError(f"cannot read an image from {type(source).__name__}; give a path, a PIL image or a "
                            "BGR ndarray (H, W, 3)")


def source_name(source: ImageSource, index: int) -> str:
    """The path a result reports: the file's path, else 'image{index}.jpg' as Ultralytics names arrays."""
    return str(source) if isinstance(source, (str, os.PathLike)) else f"image{index}.jpg"


def is_single_source(source: object) -> bool:
    """Whether ``source`` is one image (as opposed to a list or tuple of images)."""
    return isinstance(source, (str, os.PathLike, bytes, bytearray, np.ndarray, Image.Image, Path))
