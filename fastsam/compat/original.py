"""The original FastSAM repository's Python API: ``from fastsam import FastSAM, FastSAMPrompt``.

``FastSAM`` is :class:`fastsam.compat.ultralytics.FastSAM` (the original's model call is a subset of it).
:class:`FastSAMPrompt` answers ``everything_prompt``, ``box_prompt``, ``point_prompt`` and ``text_prompt`` with
the original's argument names, return types, shapes and selection rules, from fastsam's run-length result
(only the returned arrays are built at full resolution), and draws with ``plot`` / ``plot_to_result``.
Where the original fails silently or in an arbitrary way, these raise :class:`fastsam.errors.InvalidInputError`
or keep the caller's order: see the README section "Coming from the original FastSAM / from Ultralytics".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from fastsam.compat.images import bgr_source_to_rgb
from fastsam.compat.results import Results, dense_masks
from fastsam.compat.ultralytics import FastSAM, check_device
from fastsam.errors import InvalidInputError
from fastsam.io.export import atomic_write_bytes
from fastsam.io.overlay import draw_overlay
from fastsam.rle import RunLengthMask

__all__ = ["FastSAM", "FastSAMPrompt"]

#: The original's fixed mask colour when ``mask_random_color`` is off (RGB).
ORIGINAL_MASK_COLOR = (30, 144, 255)


class FastSAMPrompt:
    """Prompts on the results of ``FastSAM(...)(image)``, as the original's ``FastSAMPrompt(image, results,
    device)``. ``image``: the path, PIL image or BGR ndarray the results came from."""

    def __init__(self, image: Any, results: Sequence[Results] | None, device: str = "cuda") -> None:
        self.img = np.ascontiguousarray(bgr_source_to_rgb(image)[..., ::-1])  # BGR, as the original keeps it
        self.device = device
        self.results = results
        if results is not None:
            if not isinstance(results, (list, tuple)) or not all(isinstance(r, Results) for r in results):
                raise InvalidInputError("results must be the list returned by FastSAM(...)(image)")
            if results and tuple(results[0].orig_shape) != self.img.shape[:2]:
                raise InvalidInputError(f"the image is {self.img.shape[1]}x{self.img.shape[0]} but the results are "
                                        f"for a {results[0].orig_shape[1]}x{results[0].orig_shape[0]} image")

    # ------------------------------------------------------------------------------------------- helpers
    def _view(self) -> Results | None:
        """The first image's results, None when there are none (the original then returns [])."""
        return self.results[0] if self.results else None

    def _stack(self, masks: Sequence[RunLengthMask], dtype: type) -> np.ndarray:
        return dense_masks(list(masks), self.img.shape[:2], dtype)

    # ------------------------------------------------------------------------------------------- prompts
    def everything_prompt(self) -> torch.Tensor | list:
        """Every instance: (N, H, W) float32 tensor of 0/1 (the original's ``results[0].masks.data``)."""
        view = self._view()
        if view is None:
            return []
        if view.masks is None:
            return torch.zeros((0, *view.orig_shape), dtype=torch.float32)
        return view.masks.data

    def box_prompt(self, bbox: Sequence[float] | None = None, bboxes: Sequence[Sequence[float]] | None = None
                   ) -> np.ndarray | list:
        """The best mask-vs-box IoU instance per box: (K, H, W) float32 ndarray of 0/1, as the original. Boxes
        are xyxy image pixels; an instance chosen by several boxes appears once, at its first box's place."""
        view = self._view()
        if view is None:
            return []
        if bbox is None and bboxes is None:
            raise InvalidInputError("give bbox=[x1, y1, x2, y2] or bboxes=[[x1, y1, x2, y2], ...]")
        boxes = [bbox] if bboxes is None else bboxes
        result = view.result
        if len(view.indices) != len(result):
            raise InvalidInputError("box_prompt works on the all-instance results, not on a prompted subset")
        picks = list(dict.fromkeys(result.prompt(boxes=boxes).instance_ids)) if len(result) else []
        return self._stack([result.rles[i] for i in picks], np.float32)

    def point_prompt(self, points: Sequence[Sequence[float]], pointlabel: Sequence[int]) -> np.ndarray | list:
        """One mask merged by the original's rule (instances from the largest, each foreground point inside adds
        it, each background point inside erases it): (1, H, W) bool ndarray."""
        view = self._view()
        if view is None:
            return []
        result = view.result
        if len(view.indices) != len(result):
            raise InvalidInputError("point_prompt works on the all-instance results, not on a prompted subset")
        selection = result.prompt(points=points, labels=pointlabel)
        return self._stack(selection.masks, bool)

    def text_prompt(self, text: str, text_model: object = None) -> np.ndarray | list:
        """The instance whose crop CLIP matches ``text`` best: (1, H, W) bool ndarray. CLIP runs through
        fastsam's text prompts (``pip install "fastsam-torch[text]"``; ``text_model`` a CLIP folder or model id,
        default ``$FASTSAM_CLIP`` or openai/clip-vit-base-patch32)."""
        view = self._view()
        if view is None:
            return []
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a string, got {type(text).__name__}")
        device = str(check_device(self.device))
        selection = view.result.prompt(texts=[text], text_model=text_model, text_device=device)
        return self._stack(selection.masks, bool)

    # ------------------------------------------------------------------------------------------- drawing
    def plot_to_result(self, annotations: Any, bboxes: Any = None, points: Any = None, point_label: Any = None,
                       mask_random_color: bool = True, better_quality: bool = True, retina: bool = False,
                       withContours: bool = True) -> np.ndarray:
        """The image with ``annotations`` (what a prompt returned: (K, H, W) masks as tensor or ndarray, or the
        original's list of dicts with 'segmentation') drawn, smallest on top, with optional contours, boxes and
        points: (H, W, 3) uint8 BGR. ``better_quality`` closes then opens each mask (3x3, 8x8) as the original;
        ``retina`` is accepted for compatibility (masks are always at image resolution here)."""
        h, w = self.img.shape[:2]
        masks = [RunLengthMask.from_mask(m) for m in _annotation_masks(annotations, (h, w))]
        labels = None if points is None else (point_label if point_label is not None else [1] * len(points))
        picture = draw_overlay(np.ascontiguousarray(self.img[..., ::-1]), masks, points=points, labels=labels,
                               boxes=bboxes, contours=bool(withContours), clean_edges=bool(better_quality),
                               color=None if mask_random_color else ORIGINAL_MASK_COLOR,
                               seed=None if mask_random_color else 0)
        return np.ascontiguousarray(picture[..., ::-1])

    def plot(self, annotations: Any, output_path: str | os.PathLike, bboxes: Any = None, points: Any = None,
             point_label: Any = None, mask_random_color: bool = True, better_quality: bool = True,
             retina: bool = False, withContours: bool = True) -> None:
        """Draw as :meth:`plot_to_result` and write the picture to ``output_path`` (folders are created);
        nothing is written for empty annotations, as the original."""
        if len(annotations) == 0:
            return None
        picture = self.plot_to_result(annotations, bboxes, points, point_label, mask_random_color,
                                      better_quality, retina, withContours)
        suffix = Path(output_path).suffix.lower() or ".png"
        ok, encoded = cv2.imencode(suffix, picture)
        if not ok:
            raise InvalidInputError(f"OpenCV cannot write {output_path}: unknown image type {suffix!r}")
        atomic_write_bytes(Path(output_path), encoded.tobytes())
        return None


def _annotation_masks(annotations: Any, size: tuple[int, int]) -> list[np.ndarray]:
    """What a prompt returned -> list of (H, W) bool masks of the image's size."""
    if isinstance(annotations, torch.Tensor):
        annotations = annotations.detach().cpu().numpy()
    if isinstance(annotations, (list, tuple)) and annotations and isinstance(annotations[0], dict):
        annotations = [a["segmentation"] for a in annotations]
    masks = [np.asarray(m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else m) != 0 for m in annotations]
    for k, mask in enumerate(masks):
        if mask.shape != size:
            raise InvalidInputError(f"annotation {k} is {mask.shape}, not the image's {size}")
    return masks
