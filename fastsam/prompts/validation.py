"""Checking and normalising prompt coordinates given by users."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fastsam.errors import InvalidInputError


def _as_float_array(values: object, name: str, width: int) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be numbers, got {values!r:.80}") from exc
    if array.size == 0:
        raise InvalidInputError(f"{name} is empty; give at least one")
    if array.ndim == 1 and array.size == width:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != width:
        raise InvalidInputError(f"{name} must have shape (N, {width}), got {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{name} contain NaN or infinite values")
    return array


def check_points(points: object, labels: object | None, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 2) as (x, y) image pixels and labels (N,) in {0, 1} -> integer pixel indices and labels.

    Fractional coordinates are floored to the pixel that contains them. Labels default to all foreground.
    """
    pts = _as_float_array(points, "points", 2)
    h, w = image_size
    outside = (pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)
    if outside.any():
        bad = pts[np.flatnonzero(outside)[0]]
        raise InvalidInputError(f"point ({bad[0]:g}, {bad[1]:g}) is outside the {w}x{h} image (x in [0, {w}), y in [0, {h}))")
    if labels is None:
        lab = np.ones(pts.shape[0], np.int64)
    else:
        lab_array = np.asarray(labels)
        if lab_array.ndim != 1 or lab_array.shape[0] != pts.shape[0]:
            raise InvalidInputError(f"got {pts.shape[0]} points but {lab_array.size} labels; give one label per point")
        if not np.isin(lab_array, (0, 1)).all():
            raise InvalidInputError(f"labels must be 1 (foreground) or 0 (background), got {lab_array.tolist()}")
        lab = lab_array.astype(np.int64)
    return np.floor(pts).astype(np.int64), lab


def check_boxes(boxes: object, image_size: tuple[int, int]) -> np.ndarray:
    """Boxes (M, 4) as xyxy image pixels -> float array; each must have x2 > x1, y2 > y1 and overlap the image."""
    array = _as_float_array(boxes, "boxes", 4)
    h, w = image_size
    for x1, y1, x2, y2 in array:
        if x2 <= x1 or y2 <= y1:
            raise InvalidInputError(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is empty or inverted; need x2 > x1 and y2 > y1")
        if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
            raise InvalidInputError(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {w}x{h} image")
    return array


def check_instance_count(areas: Sequence[int]) -> None:
    if len(areas) == 0:
        raise InvalidInputError("the image has no detected instances to select from")
