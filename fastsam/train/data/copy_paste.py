"""Simple Copy-Paste (Ghiasi et al., CVPR 2021): instances cut from one training image pasted onto another.

A random subset of the donor's instances is pasted, pixels and outlines, onto the receiving image (both already
augmented independently, so the pasted objects arrive at their own scale and place). What the pasted pixels
cover is removed from the receiving image's instances: their masks keep only their visible pixels, their boxes
are recomputed from those, and instances hidden entirely (no visible cell of the training mask) are dropped.
Only one full-resolution mask is made, the union of the pasted instances; every instance is filled inside its
own window.
"""

from __future__ import annotations

import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.train.data.polygons import fill_polygons, rasterize, rasterize_visible
from fastsam.train.data.sample import Segments, segments_boxes


def copy_paste(image: np.ndarray, segments: Segments, donor_image: np.ndarray, donor_segments: Segments,
               mask_ratio: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste between 1 and all of ``donor_segments`` (chosen with ``rng``) from ``donor_image`` onto ``image``
    (both uint8 (S, S, 3), polygons in their pixels). Returns the composed image, boxes float32 (n, 4) xyxy
    pixels and masks uint8 (n, S / mask_ratio, S / mask_ratio): the receiving instances still visible first
    (in their order), then the pasted ones."""
    if image.shape != donor_image.shape or image.ndim != 3 or image.shape[0] != image.shape[1]:
        raise InvalidInputError(f"copy_paste needs two square images of one size, got {image.shape} and "
                                f"{donor_image.shape}")
    size = image.shape[0]
    if mask_ratio < 1 or size % mask_ratio:
        raise InvalidInputError(f"mask_ratio must divide the image size {size}, got {mask_ratio}")
    cells = size // mask_ratio
    if not donor_segments:
        return image, segments_boxes(segments, size, size), rasterize(segments, cells, cells, mask_ratio)
    count = int(rng.integers(1, len(donor_segments) + 1))
    pasted = [donor_segments[k] for k in sorted(rng.choice(len(donor_segments), count, replace=False))]
    covered = np.zeros((size, size), np.uint8)
    for polygons in pasted:
        fill_polygons(covered, polygons)
    composed = np.where(covered[..., None].astype(bool), donor_image, image)
    masks, boxes = rasterize_visible(segments, cells, cells, mask_ratio, covered)
    visible = masks.any(axis=(1, 2))  # not reshape(n, -1): numpy cannot infer -1 for an image with no instances
    return (composed,
            np.concatenate((boxes[visible], segments_boxes(pasted, size, size))),
            np.concatenate((masks[visible], rasterize(pasted, cells, cells, mask_ratio))))
