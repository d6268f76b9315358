"""YOLOv8's 4-image mosaic: four images around a random centre of a 2S x 2S grey canvas."""

from __future__ import annotations

import numpy as np

from fastsam.errors import InvalidInputError

from fastsam.train.data.augment import PAD_VALUE, clip_segments
from fastsam.train.data.sample import Segments


def mosaic4(tiles: list[tuple[np.ndarray, Segments]], size: int,
            rng: np.random.Generator) -> tuple[np.ndarray, Segments]:
    """Place four (image, segments) tiles, each at most ``size`` on its long side, top-left, top-right,
    bottom-left and bottom-right of a centre drawn in [size/2, 3 size/2)^2 of a (2 size)^2 canvas; each tile
    touches the centre and is cut at the canvas border. Polygons are shifted with their tile and clipped to the
    canvas. Returns the canvas (2S, 2S, 3) and all instances."""
    if len(tiles) != 4:
        raise InvalidInputError(f"mosaic4 takes 4 tiles, got {len(tiles)}")
    canvas_size = 2 * size
    xc, yc = (int(v) for v in rng.uniform(size / 2, 3 * size / 2, 2))
    canvas = np.full((canvas_size, canvas_size, 3), PAD_VALUE, np.uint8)
    segments: Segments = []
    for corner, (image, tile_segments) in enumerate(tiles):
        h, w = image.shape[:2]
        # Where the tile's top-left pixel lands: it ends at the centre on the sides facing it.
        x0 = xc - w if corner in (0, 2) else xc
        y0 = yc - h if corner in (0, 1) else yc
        cx1, cy1 = max(x0, 0), max(y0, 0)
        cx2, cy2 = min(x0 + w, canvas_size), min(y0 + h, canvas_size)
        canvas[cy1:cy2, cx1:cx2] = image[cy1 - y0:cy2 - y0, cx1 - x0:cx2 - x0]
        shift = np.array([x0, y0], np.float32)
        segments.extend([polygon + shift for polygon in polygons] for polygons in tile_segments)
    clipped = [parts for parts in clip_segments(segments, canvas_size, canvas_size) if parts]
    return canvas, clipped
