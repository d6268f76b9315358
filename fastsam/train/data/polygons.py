"""Instance outlines: binary mask or COCO RLE -> polygons, polygons -> low-resolution masks, clipping, merging.

Coordinates are continuous pixels: pixel (i, j) covers [i, i + 1) x [j, j + 1), so its centre is (i + 0.5,
j + 0.5). Outlines traced from a mask pass through the centres of its boundary pixels, and filling (OpenCV's)
takes every pixel whose centre is inside the outline or within half a pixel of it, so that a traced mask
rasterised at ratio 1 gives back the same pixels (holes filled: only outer contours are kept, as in the FastSAM
recipe). A drawn polygon (COCO, YOLO-seg) comes out half a pixel wider all round, as with YOLOv8's own fill.
Low-resolution masks are the majority vote of each cell's image pixels.
"""

from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.train.data.rle_crop import decode_box, rle_runs
from fastsam.train.data.sample import segments_boxes

#: Sub-pixel bits used when rasterising (OpenCV fixed point): 1/16 pixel.
_SHIFT = 4


def mask_to_polygons(mask: np.ndarray, offset: tuple[float, float] = (0.0, 0.0), min_area: float = 1.0,
                     tolerance: float = 0.0) -> list[np.ndarray]:
    """Outer contours of a (h, w) binary mask (a crop whose top-left pixel is ``offset`` = (x0, y0)) as (k, 2)
    float32 polygons in image pixels. Parts enclosing less than ``min_area`` square pixels are dropped;
    ``tolerance`` > 0 simplifies each outline (Douglas-Peucker, in pixels)."""
    if mask.ndim != 2:
        raise InvalidInputError(f"mask must be (h, w), got shape {mask.shape}")
    if mask.size == 0:
        return []
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    shift = np.array([offset[0] + 0.5, offset[1] + 0.5], np.float32)
    polygons = []
    for contour in contours:
        if tolerance > 0 and len(contour) > 3:
            contour = cv2.approxPolyDP(contour, tolerance, True)
        if len(contour) < 3 or cv2.contourArea(contour) < min_area:
            continue
        polygons.append(contour.reshape(-1, 2).astype(np.float32) + shift)
    return polygons


def rle_to_polygons(rle: dict, min_area: float = 1.0, tolerance: float = 0.0) -> list[np.ndarray]:
    """Polygons of a COCO RLE (compressed string or uncompressed list counts), traced inside its tight box
    only: the full frame is never decoded."""
    runs = rle_runs(rle)
    x0, y0, x1, y1 = runs.bbox()
    if x1 <= x0 or y1 <= y0:
        return []
    return mask_to_polygons(decode_box(runs, x0, y0, x1, y1), (x0, y0), min_area, tolerance)


def flat_to_polygon(values: list | np.ndarray) -> np.ndarray:
    """A COCO-style flat [x1, y1, x2, y2, ...] list as a (k, 2) float32 polygon."""
    array = np.asarray(values, np.float32)
    if array.ndim != 1 or array.size % 2:
        raise InvalidInputError(f"a polygon needs an even number of coordinates, got {array.size}")
    return array.reshape(-1, 2)


def _cell_window(polygons: list[np.ndarray], height: int, width: int, ratio: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) cells an instance's fill can touch: its extent plus one cell of margin for the fill's
    half-pixel reach, clipped to the grid (empty when the instance lies outside)."""
    points = np.concatenate(polygons)
    x0 = min(max(int(np.floor(points[:, 0].min() / ratio)) - 1, 0), width)
    y0 = min(max(int(np.floor(points[:, 1].min() / ratio)) - 1, 0), height)
    x1 = max(min(int(np.ceil(points[:, 0].max() / ratio)) + 1, width), x0)
    y1 = max(min(int(np.ceil(points[:, 1].max() / ratio)) + 1, height), y0)
    return x0, y0, x1, y1


def fill_polygons(canvas: np.ndarray, polygons: list[np.ndarray], origin: tuple[float, float] = (0.0, 0.0)) -> None:
    """Set to 1 the pixels of ``canvas`` (uint8 (h, w), its top-left pixel at image pixel ``origin``) that an
    instance's polygons fill: pixel centres inside an outline or within half a pixel of it."""
    one = 1 << _SHIFT
    shift = np.array([origin[0] + 0.5, origin[1] + 0.5], np.float32)  # pixel centres at integers
    # One fillPoly call per polygon: OpenCV's multi-polygon fill is even-odd, so touching parts of one
    # instance would cancel each other.
    for polygon in polygons:
        fixed = np.round((polygon - shift) * one).astype(np.int32)
        cv2.fillPoly(canvas, [fixed], 1, lineType=cv2.LINE_8, shift=_SHIFT)


def _majority(fine: np.ndarray, ratio: int) -> np.ndarray:
    """(h r, w r) 0/1 pixels -> (h, w) cells on where strictly more than half their pixels are: the fill
    reaches half a pixel past each edge, which a tie would favour."""
    if ratio == 1:
        return fine
    h, w = fine.shape[0] // ratio, fine.shape[1] // ratio
    covered = fine.reshape(h, ratio, w, ratio).sum(axis=(1, 3), dtype=np.int32)
    return (2 * covered > ratio * ratio).astype(np.uint8)


def _instance_fills(segments: list[list[np.ndarray]], height: int, width: int, ratio: int
                    ) -> Iterator[tuple[int, tuple[int, int, int, int], np.ndarray]]:
    """Per instance with a window on the (height, width) grid: its index, its cell window (x0, y0, x1, y1) and
    its fill at image resolution inside the window (uint8 ((y1 - y0) r, (x1 - x0) r))."""
    for k, polygons in enumerate(segments):
        if not polygons:
            continue
        x0, y0, x1, y1 = _cell_window(polygons, height, width, ratio)
        if x1 == x0 or y1 == y0:
            continue
        fine = np.zeros(((y1 - y0) * ratio, (x1 - x0) * ratio), np.uint8)
        fill_polygons(fine, polygons, (x0 * ratio, y0 * ratio))
        yield k, (x0, y0, x1, y1), fine


def rasterize(segments: list[list[np.ndarray]], height: int, width: int, ratio: int = 1) -> np.ndarray:
    """uint8 (n, height, width) masks, one per instance, of polygons in pixels of an image ``ratio`` times
    larger: a mask cell is on when more than half of its ratio x ratio image pixels are filled.

    Filling straight at low resolution would widen every mask by about half a cell on each side (OpenCV's
    fill takes each pixel its edges touch, 2 image pixels at ratio 4). Each instance is instead filled at image
    resolution inside its own box only and averaged down: no full-size mask is made.
    """
    masks = np.zeros((len(segments), height, width), np.uint8)
    for k, (x0, y0, x1, y1), fine in _instance_fills(segments, height, width, ratio):
        masks[k, y0:y1, x0:x1] = _majority(fine, ratio)
    return masks


def rasterize_visible(segments: list[list[np.ndarray]], height: int, width: int, ratio: int,
                      occluder: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rasterize` of instances partly hidden behind ``occluder`` (uint8 (height r, width r) image
    pixels, 1 where something in front covers them): masks (n, height, width) of the visible pixels only, and
    boxes (n, 4) float32 xyxy image pixels, those of the partly hidden instances recomputed from their visible
    pixels (the polygon extent for the others, as :func:`segments_boxes`). Each instance is filled inside its
    own window only."""
    masks = np.zeros((len(segments), height, width), np.uint8)
    boxes = segments_boxes(segments, width * ratio, height * ratio)
    for k, (x0, y0, x1, y1), fine in _instance_fills(segments, height, width, ratio):
        hidden = fine & occluder[y0 * ratio:y1 * ratio, x0 * ratio:x1 * ratio]
        if not hidden.any():
            masks[k, y0:y1, x0:x1] = _majority(fine, ratio)
            continue
        fine &= 1 - hidden
        cells = masks[k, y0:y1, x0:x1] = _majority(fine, ratio)
        # The box of the visible pixels in cells the mask keeps: slivers thinner than half a cell, which the
        # mask loses, do not stretch it.
        ys, xs = np.nonzero(fine & np.kron(cells, np.ones((ratio, ratio), np.uint8)))
        boxes[k] = (0, 0, 0, 0) if not len(xs) else (
            x0 * ratio + xs.min(), y0 * ratio + ys.min(), x0 * ratio + xs.max() + 1, y0 * ratio + ys.max() + 1)
    return masks, boxes


def polygon_area(polygon: np.ndarray) -> float:
    """Enclosed area of a (k, 2) polygon in square pixels (shoelace)."""
    x, y = polygon[:, 0].astype(np.float64), polygon[:, 1].astype(np.float64)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clip_half_plane(points: np.ndarray, axis: int, limit: float, keep_below: bool) -> np.ndarray:
    """Sutherland-Hodgman: the part of the closed polygon ``points`` on one side of the line coord = limit."""
    inside = points[:, axis] <= limit if keep_below else points[:, axis] >= limit
    if inside.all():
        return points
    if not inside.any():
        return points[:0]
    following = np.roll(points, -1, axis=0)
    crosses = inside != np.roll(inside, -1)
    delta = following[:, axis] - points[:, axis]
    t = np.divide(limit - points[:, axis], delta, out=np.zeros_like(delta), where=crosses)
    crossing = points + t[:, None] * (following - points)
    crossing[:, axis] = limit  # exact, whatever the rounding of t
    # Each vertex emits itself when inside, then the crossing of its outgoing edge when the edge crosses.
    candidates = np.stack([points, crossing], axis=1).reshape(-1, 2)
    keep = np.stack([inside, crosses], axis=1).reshape(-1)
    return candidates[keep]


def clip_polygon(polygon: np.ndarray, width: float, height: float) -> np.ndarray:
    """The part of a (k, 2) polygon inside [0, width] x [0, height] (exact: new vertices on the border)."""
    points = polygon.astype(np.float32, copy=False)
    if len(points) == 0:
        return points
    low, high = points.min(axis=0), points.max(axis=0)
    if low[0] >= 0 and low[1] >= 0 and high[0] <= width and high[1] <= height:
        return points  # most polygons: nothing to clip
    if high[0] <= 0 or high[1] <= 0 or low[0] >= width or low[1] >= height:
        return points[:0]
    for axis, limit, keep_below in ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True)):
        if (points[:, axis] <= limit).all() if keep_below else (points[:, axis] >= limit).all():
            continue
        points = _clip_half_plane(points, axis, limit, keep_below)
        if len(points) == 0:
            break
    return points


def merge_polygons(polygons: list[np.ndarray]) -> np.ndarray:
    """One (k, 2) polygon for all parts of an instance (YOLO-seg labels hold one per line): each next part is
    entered from the closest vertex of the outline so far and left the same way, a bridge of zero width."""
    if not polygons:
        raise InvalidInputError("merge_polygons needs at least one polygon")
    order = sorted(range(len(polygons)), key=lambda k: -polygon_area(polygons[k]))
    path = polygons[order[0]]
    for k in order[1:]:
        part = polygons[k]
        # Closest vertex pair; chunked so that two long outlines never need a huge distance matrix.
        best, best_a, best_b = np.inf, 0, 0
        step = max(1, 1_000_000 // max(len(path), 1))
        for start in range(0, len(part), step):
            chunk = part[start:start + step]
            distances = ((chunk[:, None, :] - path[None, :, :]) ** 2).sum(axis=2)
            flat = int(distances.argmin())
            if distances.flat[flat] < best:
                best = float(distances.flat[flat])
                best_b, best_a = divmod(flat, len(path))
                best_b += start
        a, b = best_a, best_b
        path = np.concatenate([path[:a + 1], part[b:], part[:b + 1], path[a:]], axis=0)
    return path
