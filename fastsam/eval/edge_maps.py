"""Soft edge maps (H, W) in [0, 1] for the boundary benchmark: from FastSAM's instances, and Canny's as a baseline.

Both end in the same non-maximum suppression along the gradient direction, so the benchmark's thinning sees
one- or two-pixel ridges, as the FastSAM paper (following SAM) describes: Sobel filtering of the masks, then edge
NMS.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.result import SegmentationResult

DEFAULT_MASK_SIGMA = 1.0
DEFAULT_CANNY_SIGMA = 2.5
CANNY_LEVELS = 99


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0.0 < float(sigma) <= 20.0:
        raise InvalidInputError(f"sigma must be a number in (0, 20] pixels, got {sigma!r}")
    return float(sigma)


def edge_nms(magnitude: np.ndarray, grad_y: np.ndarray, grad_x: np.ndarray) -> np.ndarray:
    """Non-maximum suppression: keep a pixel where its magnitude is at least both neighbours' one pixel away
    along the gradient (bilinearly interpolated; outside the image counts as 0); zero it elsewhere.

    magnitude, grad_y, grad_x: (H, W) float arrays (the gradient gives the direction only). Returns float32."""
    magnitude = np.asarray(magnitude, np.float32)
    height, width = magnitude.shape
    norm = np.hypot(grad_y, grad_x).astype(np.float32)
    safe = np.where(norm > 0, norm, 1)
    uy, ux = (grad_y / safe).astype(np.float32), (grad_x / safe).astype(np.float32)
    padded = np.pad(magnitude, 1)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)

    def sample(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        # Bilinear lookup in the zero-padded map (coordinates shifted by the pad).
        y, x = np.clip(y + 1, 0, height + 1), np.clip(x + 1, 0, width + 1)
        y0, x0 = np.minimum(np.floor(y).astype(np.int64), height), np.minimum(np.floor(x).astype(np.int64), width)
        fy, fx = y - y0, x - x0
        top = padded[y0, x0] * (1 - fx) + padded[y0, x0 + 1] * fx
        bottom = padded[y0 + 1, x0] * (1 - fx) + padded[y0 + 1, x0 + 1] * fx
        return top * (1 - fy) + bottom * fy

    ahead = sample(rows + uy, cols + ux)
    behind = sample(rows - uy, cols - ux)
    keep = (magnitude > 0) & (magnitude >= ahead) & (magnitude >= behind)
    return np.where(keep, magnitude, 0).astype(np.float32)


def _sobel(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d/dy, d/dx) of a float32 image in value per pixel (3x3 Sobel / 8), borders replicated."""
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REPLICATE)
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REPLICATE)
    return gy, gx


@functools.lru_cache(maxsize=16)
def _step_peak(sigma: float) -> float:
    """Largest gradient magnitude of a unit step blurred by ``sigma``: it scales a mask's edge to 1."""
    margin = int(np.ceil(4 * sigma)) + 3
    step = np.zeros((3, 2 * margin), np.float32)
    step[:, margin:] = 1
    blurred = cv2.GaussianBlur(step, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return float(np.abs(_sobel(blurred)[1]).max())


def fastsam_edge_map(result: SegmentationResult, sigma: float = DEFAULT_MASK_SIGMA) -> np.ndarray:
    """Edge map of an everything-mode result: each instance's mask, blurred by ``sigma`` pixels, Sobel, scaled so
    a mask's edge is 1 and weighted by the instance's score; the strongest instance per pixel; NMS.

    Works inside each mask's box (plus the blur's reach): no full-size mask is ever built. Returns (H, W) float32
    in [0, 1]; all zeros without instances. When the result kept its prototypes (``Predictor(...,
    keep_prototypes=True)``) each instance contributes its mask probabilities (sigmoid of the logits, zero outside
    its box, as the masks are cropped), as the paper does; otherwise the binary masks stand in for them."""
    if not isinstance(result, SegmentationResult):
        raise InvalidInputError(f"expected a SegmentationResult, got {type(result).__name__}")
    sigma = _check_sigma(sigma)
    height, width = result.image_size
    strength = np.zeros((height, width), np.float32)
    grad_y = np.zeros((height, width), np.float32)
    grad_x = np.zeros((height, width), np.float32)
    reach = int(np.ceil(3 * sigma)) + 2
    peak = _step_peak(sigma)
    prototypes = result.prototypes if result.prototypes is not None and result.prototypes.retina else None
    for index, (rle, score) in enumerate(zip(result.rles, np.asarray(result.scores, np.float32))):
        if rle.area == 0:
            continue
        x1, y1, x2, y2 = rle.bbox()
        if prototypes is not None:
            probability, px, py = prototypes.probability_crop(index)
            x1, y1, x2, y2 = px, py, px + probability.shape[1], py + probability.shape[0]
        x1, y1 = max(x1 - reach, 0), max(y1 - reach, 0)
        x2, y2 = min(x2 + reach, width), min(y2 + reach, height)
        if prototypes is None:
            crop = rle.decode_region(x1, y1, x2, y2).astype(np.float32)
        else:
            crop = np.zeros((y2 - y1, x2 - x1), np.float32)
            crop[py - y1:py - y1 + probability.shape[0], px - x1:px - x1 + probability.shape[1]] = probability
        # Replicated borders: a mask that touches the image border has no edge along it.
        soft = cv2.GaussianBlur(crop, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        gy, gx = _sobel(soft)
        value = np.minimum(np.hypot(gy, gx) / peak, 1.0) * float(score)
        region = strength[y1:y2, x1:x2]
        stronger = value > region
        region[stronger] = value[stronger]
        grad_y[y1:y2, x1:x2][stronger] = gy[stronger]
        grad_x[y1:y2, x1:x2][stronger] = gx[stronger]
    return np.clip(edge_nms(strength, grad_y, grad_x), 0.0, 1.0)


def _gray(rgb: np.ndarray) -> np.ndarray:
    image = np.asarray(rgb)
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.ndim == 2 and image.dtype == np.uint8:
        return image
    raise InvalidInputError(f"expected an (H, W, 3) or (H, W) uint8 image, got {image.dtype} {image.shape}")


def canny_levels(count: int = CANNY_LEVELS, low: float = 2.0, high: float = 400.0) -> np.ndarray:
    """Canny's high thresholds (L2 Sobel magnitude of an 8-bit image) for the benchmark's ``count`` thresholds:
    geometric from ``low`` to ``high``."""
    return np.geomspace(low, high, count)


def canny_edge_map(rgb: np.ndarray, sigma: float = DEFAULT_CANNY_SIGMA, levels: int = CANNY_LEVELS,
                   low_ratio: float = 0.4) -> np.ndarray:
    """Canny's edges at ``levels`` hysteresis thresholds folded into one soft map.

    The grayscale image is blurred by ``sigma`` pixels; OpenCV's Canny runs with high threshold ``canny_levels()[k]``
    and low ``low_ratio`` x high. A pixel gets the k-th value of the benchmark's threshold grid for the highest k
    at which it is still an edge, so thresholding the map at the k-th grid value gives Canny's k-th output (with
    the few pixels that only higher thresholds keep: Canny's outputs are nested but for hysteresis details).
    Returns (H, W) float32 in [0, 1)."""
    sigma = _check_sigma(sigma)
    if not isinstance(low_ratio, (int, float)) or not 0.0 < float(low_ratio) <= 1.0:
        raise InvalidInputError(f"low_ratio must be in (0, 1], got {low_ratio!r}")
    from fastsam.eval.bsds import threshold_grid

    grid = threshold_grid(levels).astype(np.float32)
    blurred = cv2.GaussianBlur(_gray(rgb), (0, 0), sigma)
    soft = np.zeros(blurred.shape, np.float32)
    for value, high in zip(grid, canny_levels(levels)):
        edges = cv2.Canny(blurred, float(low_ratio * high), float(high), L2gradient=True)
        soft[edges > 0] = value  # levels rise, so the last level that keeps a pixel wins
    return soft
