"""The all-instance segmentation of one image, and prompts answered from it without re-running the network."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.prompts.boxes import box_prompt
from fastsam.prompts.points import merge_point_prompt, per_point_prompt
from fastsam.prompts.selection import Selection
from fastsam.prompts.text import text_prompt
from fastsam.prompts.validation import check_boxes, check_points
from fastsam.rle import RunLengthMask, RunTable

if TYPE_CHECKING:
    from fastsam.inference.masks import PrototypeMasks


@dataclass
class SegmentationResult:
    """Every instance found in one image.

    boxes: (N, 4) float32 xyxy in image pixels (the boxes that crop the masks); scores: (N,) confidences;
    rles: N run-length masks of image_size (height, width). Instances are ordered by descending score.
    ``image`` optionally keeps the (H, W, 3) RGB image for drawing; ``timings`` holds seconds per stage;
    ``prototypes`` (kept when the predictor is asked to) renders each instance's mask probabilities.
    """

    image_size: tuple[int, int]
    boxes: np.ndarray
    scores: np.ndarray
    rles: list[RunLengthMask]
    image: np.ndarray | None = None
    source: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    prototypes: "PrototypeMasks | None" = None

    def __len__(self) -> int:
        return len(self.rles)

    @cached_property
    def areas(self) -> np.ndarray:
        """(N,) mask areas in pixels."""
        return np.array([r.area for r in self.rles], dtype=np.int64)

    @cached_property
    def run_table(self) -> RunTable:
        """Every instance's runs in one table (built on first use), for prompts over many instances. Once it is
        built, ``rles`` hold views of it, so that the result keeps its runs once."""
        if not self.rles:
            return RunTable.empty(*self.image_size)
        table = RunTable.from_masks(self.rles)
        self.rles[:] = [table.mask(i) for i in range(len(table))]
        return table

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
               per_point: bool = False, texts: object = None, *, text_model: object = None,
               text_mode: str | None = None, text_top_k: int | None = None, text_threshold: float | None = None,
               text_metric: str | None = None, text_crop: str = "mask", text_wider: bool = False,
               text_device: str | None = None) -> Selection:
        """Select masks with point, box and/or text prompts, from this cached result.

        points: (P, 2) (x, y) image pixels; labels: (P,) 1 foreground / 0 background (default all 1).
        By default the points give one merged mask (FastSAM's rule); ``per_point=True`` gives one instance per
        foreground point instead. boxes: (M, 4) xyxy image pixels, one best-IoU instance each.
        texts: one string or a list ("a yellow dog"), scored with CLIP on each instance's crop (needs
        ``image``; see :func:`fastsam.prompts.text.text_prompt` for the ``text_*`` options and for the full
        score table): ``text_model`` a CLIP folder, model id or scorer object; ``text_mode`` best (default) /
        topk (``text_top_k``) / threshold (``text_threshold``, on the cosine similarity unless
        ``text_metric='probability'``); ``text_crop`` 'mask' or 'box'; ``text_wider``. Each text adds its
        picks, best first, with the text score (softmax probability, or cosine in threshold mode).
        When several kinds are given, the selection holds the box masks first, then the points, then texts.
        """
        if points is None and boxes is None and texts is None:
            if labels is not None:
                raise InvalidInputError("labels were given without points")
            raise InvalidInputError("give points and/or boxes, or texts, to prompt with (or use everything())")
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
                selection.extend(per_point_prompt(self.run_table, self.mask_bounds, self.areas, self.scores, xs, ys,
                                                  labs, self.image_size))
            else:
                selection.extend(merge_point_prompt(self.run_table, self.mask_bounds, self.areas, self.scores, xs, ys,
                                                    labs, self.image_size))
        elif labels is not None:
            raise InvalidInputError("labels were given without points")
        if texts is not None:
            selection.extend(text_prompt(self, texts, model=text_model, mode=text_mode, top_k=text_top_k,
                                         threshold=text_threshold, metric=text_metric, crop=text_crop,
                                         wider=text_wider, device=text_device).selection)
        return selection

    def to_sam_records(self, output_mode: str = "binary_mask", min_mask_region_area: float = 0,
                       min_area: float = 0) -> list[dict]:
        """Every instance as SAM's automatic mask generator gives it (dicts with segmentation, area, bbox XYWH,
        predicted_iou, stability_score, point_coords, crop_box): see :func:`fastsam.sam_records.sam_records`
        for the fields, ``output_mode`` ('binary_mask', 'uncompressed_rle', 'coco_rle') and SAM's
        ``min_mask_region_area`` clean-up of small holes and islands; ``min_area`` drops smaller masks."""
        from fastsam.sam_records import sam_records

        return sam_records(self, output_mode=output_mode, min_mask_region_area=min_mask_region_area,
                           min_area=min_area)

    def to_supervision(self) -> object:
        """Every instance as ``supervision.Detections`` (needs ``pip install "fastsam-torch[compat]"``)."""
        from fastsam.sam_records import to_supervision

        return to_supervision(self)

    def name(self) -> str:
        """A file stem for outputs: the source file's stem, or 'image'."""
        return Path(self.source).stem if self.source else "image"
