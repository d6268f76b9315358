"""The all-instance segmentation of one image, and prompts answered from it without re-running the network."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.prompts.boxes import box_prompt
from fastsam.prompts.points import merge_point_prompt, per_point_prompt
from fastsam.prompts.selection import Selection
from fastsam.prompts.validation import check_boxes, check_points
from fastsam.rle import RunLengthMask


@dataclass
class SegmentationResult:
    """Every instance found in one image.

    boxes: (N, 4) float32 xyxy in image pixels (the boxes that crop the masks); scores: (N,) confidences;
    rles: N run-length masks of image_size (height, width). Instances are ordered by descending score.
    ``image`` optionally keeps the (H, W, 3) RGB image for drawing; ``timings`` holds seconds per stage.
    """

    image_size: tuple[int, int]
    boxes: np.ndarray
    scores: np.ndarray
    rles: list[RunLengthMask]
    image: np.ndarray | None = None
    source: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rles)

    @cached_property
    def areas(self) -> np.ndarray:
        """(N,) mask areas in pixels."""
        return np.array([r.area for r in self.rles], dtype=np.int64)

    @cached_property
    def mask_bounds(self) -> np.ndarray:
        """(N, 4) int64 tight boxes of the masks (x1, y1, x2, y2; exclusive max corner)."""
        return np.array([r.bbox() for r in self.rles], dtype=np.int64).reshape(-1, 4)

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) boolean masks. This materialises every mask at full resolution: prefer :meth:`mask`,
        :attr:`rles` or the exporters for large images or many instances."""
        h, w = self.image_size
        if not self.rles:
            return np.zeros((0, h, w), bool)
        return np.stack([r.decode() for r in self.rles])

    def mask(self, index: int) -> np.ndarray:
        """(H, W) boolean mask of one instance."""
        return self.rles[index].decode()

    def everything(self) -> Selection:
        """Every instance, as a selection."""
        selection = Selection(self.image_size)
        for n, rle in enumerate(self.rles):
            selection.add(rle, n, "everything", float(self.scores[n]))
        return selection

    def prompt(self, points: object = None, labels: object = None, boxes: object = None,
               per_point: bool = False) -> Selection:
        """Select masks with point and/or box prompts, from this cached result.

        points: (P, 2) (x, y) image pixels; labels: (P,) 1 foreground / 0 background (default all 1).
        By default the points give one merged mask (FastSAM's rule); ``per_point=True`` gives one instance per
        foreground point instead. boxes: (M, 4) xyxy image pixels, one best-IoU instance each. When both are
        given, the selection holds the box masks first, then the point masks.
        """
        if points is None and boxes is None:
            if labels is not None:
                raise InvalidInputError("labels were given without points")
            raise InvalidInputError("give points and/or boxes to prompt with (or use everything())")
        selection = Selection(self.image_size)
        if boxes is not None:
            box_array = check_boxes(boxes, self.image_size)
            if len(self):
                selection.extend(box_prompt(self.rles, self.areas, self.mask_bounds, self.scores, box_array,
                                            self.image_size))
        if points is not None:
            pts, labs = check_points(points, labels, self.image_size)
            xs, ys = pts[:, 0], pts[:, 1]
            if per_point:
                selection.extend(per_point_prompt(self.rles, self.mask_bounds, self.areas, self.scores, xs, ys, labs,
                                                  self.image_size))
            else:
                selection.extend(merge_point_prompt(self.rles, self.mask_bounds, self.areas, self.scores, xs, ys,
                                                    labs, self.image_size))
        elif labels is not None:
            raise InvalidInputError("labels were given without points")
        return selection

    def name(self) -> str:
        """A file stem for outputs: the source file's stem, or 'image'."""
        return Path(self.source).stem if self.source else "image"
