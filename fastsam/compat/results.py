"""Ultralytics-style ``Results`` / ``Boxes`` / ``Masks``: lazy views of a :class:`SegmentationResult`.

User code written for the original FastSAM or for Ultralytics reads ``result.masks.data``, ``masks.xy``,
``boxes.xyxy``, ``boxes.conf``, ``orig_img`` ... These classes answer from fastsam's run-length result and the
instance indices of the view: nothing of size (N, H, W) is built until ``masks.data`` is read (then once, and
kept). ``masks.xy`` traces each mask inside its own box.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fastsam.errors import InvalidInputError
from fastsam.io.overlay import draw_overlay
from fastsam.result import SegmentationResult
from fastsam.rle import RunLengthMask

#: FastSAM checkpoints have one class.
NAMES = {0: "object"}


def _index_array(index: object, count: int) -> np.ndarray:
    """Positions selected by an int, slice, list, bool or integer array / tensor, as an int64 array."""
    if isinstance(index, torch.Tensor):
        index = index.cpu().numpy()
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        return np.arange(count)[[int(index)]]
    if isinstance(index, slice):
        return np.arange(count)[index]
    array = np.asarray(index)
    if array.dtype == bool:
        if array.shape != (count,):
            raise InvalidInputError(f"a boolean index must have {count} entries, got shape {array.shape}")
        return np.flatnonzero(array)
    if array.size == 0:
        return np.zeros(0, np.int64)
    if not np.issubdtype(array.dtype, np.integer) or array.ndim != 1:
        raise InvalidInputError(f"index results with an int, a slice or a 1-D int/bool array, got {index!r:.80}")
    return np.arange(count)[array]


def dense_masks(rles: list[RunLengthMask], size: tuple[int, int], dtype: type) -> np.ndarray:
    """(N, H, W) array of ``dtype`` with the masks set to 1, each decoded inside its own box only."""
    out = np.zeros((len(rles), *size), dtype)
    for k, rle in enumerate(rles):
        x1, y1, x2, y2 = rle.bbox()
        if x2 > x1:
            out[k, y1:y2, x1:x2] = rle.decode_region(x1, y1, x2, y2)
    return out


class _InstanceView:
    """Some instances of a result, by index; indexing gives a view of the same kind (no data is copied)."""

    def __init__(self, result: SegmentationResult, indices: np.ndarray) -> None:
        self._result, self._indices = result, indices
        self.orig_shape = result.image_size

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: object):  # -> the same view type
        return type(self)(self._result, self._indices[_index_array(index, len(self))])

    def cpu(self):  # tensors here always live on the CPU
        return self

    def numpy(self):
        return self


class Boxes(_InstanceView):
    """Boxes of the instances of a view: ``data`` (N, 6) float32 [x1, y1, x2, y2, conf, cls] in image pixels."""

    is_track, id = False, None

    @cached_property
    def data(self) -> torch.Tensor:
        boxes = self._result.boxes[self._indices].reshape(-1, 4)
        scores = self._result.scores[self._indices].reshape(-1, 1)
        return torch.from_numpy(np.concatenate([boxes, scores, np.zeros_like(scores)], axis=1).astype(np.float32))

    @property
    def xyxy(self) -> torch.Tensor:
        return self.data[:, :4]

    @property
    def conf(self) -> torch.Tensor:
        return self.data[:, 4]

    @property
    def cls(self) -> torch.Tensor:
        return self.data[:, 5]

    @property
    def xywh(self) -> torch.Tensor:
        """(N, 4) centre x, centre y, width, height."""
        xyxy = self.xyxy
        return torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)

    @property
    def xyxyn(self) -> torch.Tensor:
        h, w = self.orig_shape
        return self.xyxy / torch.tensor([w, h, w, h], dtype=torch.float32)

    @property
    def xywhn(self) -> torch.Tensor:
        h, w = self.orig_shape
        return self.xywh / torch.tensor([w, h, w, h], dtype=torch.float32)

    @property
    def shape(self) -> torch.Size:
        return self.data.shape


class Masks(_InstanceView):
    """Masks of the instances of a view. ``data``: (N, H, W) float32 0/1 at image resolution, built when first
    read; ``xy`` / ``xyn``: the largest outer contour of each mask in pixels / normalised, traced in its box."""

    @property
    def rles(self) -> list[RunLengthMask]:
        """The run-length masks of this view (no decoding)."""
        return [self._result.rles[i] for i in self._indices]

    @cached_property
    def data(self) -> torch.Tensor:
        return torch.from_numpy(dense_masks(self.rles, self.orig_shape, np.float32))

    @cached_property
    def xy(self) -> list[np.ndarray]:
        segments = []
        for rle in self.rles:
            x1, y1, x2, y2 = rle.bbox()
            contours = ()
            if x2 > x1:
                crop = rle.decode_region(x1, y1, x2, y2).astype(np.uint8)
                contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x1, y1))
            if contours:
                largest = max(contours, key=len)  # the most points, as Ultralytics' "largest" strategy
                segments.append(largest.reshape(-1, 2).astype(np.float32))
            else:
                segments.append(np.zeros((0, 2), np.float32))
        return segments

    @property
    def xyn(self) -> list[np.ndarray]:
        h, w = self.orig_shape
        return [segment / np.array([w, h], np.float32) for segment in self.xy]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self._indices), *self.orig_shape)


class Results:
    """One image's instances as Ultralytics' ``Results``: ``boxes``, ``masks`` (None when there is no instance,
    as Ultralytics), ``orig_img`` (BGR uint8), ``orig_shape``, ``path``, ``names``, ``speed`` (ms), ``plot()``,
    ``save()``. ``result`` is the fastsam result behind the view and ``indices`` its instances in this view."""

    def __init__(self, result: SegmentationResult, orig_img: np.ndarray, path: str,
                 indices: np.ndarray | None = None, names: dict[int, str] | None = None) -> None:
        self.result = result
        self.indices = np.arange(len(result)) if indices is None else np.asarray(indices, np.int64)
        self.orig_img = orig_img
        self.orig_shape = result.image_size
        self.path = path
        self.names = dict(NAMES if names is None else names)
        self.probs = self.keypoints = self.obb = None
        self.speed = {"preprocess": 1000 * sum(result.timings.get(k, 0.0) for k in ("decode", "letterbox")),
                      "inference": 1000 * result.timings.get("network", 0.0),
                      "postprocess": 1000 * sum(result.timings.get(k, 0.0) for k in ("nms", "masks"))}

    @cached_property
    def boxes(self) -> Boxes:
        return Boxes(self.result, self.indices)

    @cached_property
    def masks(self) -> Masks | None:
        return Masks(self.result, self.indices) if len(self.indices) else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: object) -> "Results":
        return self.new(self.indices[_index_array(index, len(self))])

    def new(self, indices: np.ndarray | None = None) -> "Results":
        """A view of the same image with other instances (none by default)."""
        chosen = np.zeros(0, np.int64) if indices is None else indices
        return Results(self.result, self.orig_img, self.path, chosen, self.names)

    def cpu(self) -> "Results":
        return self

    def numpy(self) -> "Results":
        return self

    def to(self, *args: Any, **kwargs: Any) -> "Results":
        return self

    def plot(self, conf: bool = True, line_width: float | None = None, font_size: float | None = None,
             font: str = "Arial.ttf", pil: bool = False, img: np.ndarray | None = None, im_gpu: Any = None,
             kpt_radius: int = 5, kpt_line: bool = True, labels: bool = True, boxes: bool = True,
             masks: bool = True, probs: bool = True, show: bool = False, save: bool = False,
             filename: str | None = None, color_mode: str = "class") -> np.ndarray:
        """The image (BGR, or ``img`` when given) with the masks blended and the boxes drawn, as Ultralytics'
        ``plot()``; returns (H, W, 3) uint8 BGR. Drawing works on each mask's box, not on (N, H, W) planes.
        Labels are written as 'object 0.87'. The font, pil, keypoint and GPU arguments are accepted for
        compatibility and have no effect."""
        base = self.orig_img if img is None else np.asarray(img)
        if base.shape[:2] != tuple(self.orig_shape) or base.ndim != 3 or base.dtype != np.uint8:
            raise InvalidInputError(f"img must be ({self.orig_shape[0]}, {self.orig_shape[1]}, 3) uint8 BGR, got "
                                    f"{base.shape} {base.dtype}")
        rgb = np.ascontiguousarray(base[..., 2::-1])
        shown = self.masks.rles if masks and len(self) else []
        drawable = self.boxes.xyxy.numpy()
        drawable = drawable[(drawable[:, 2] > drawable[:, 0]) & (drawable[:, 3] > drawable[:, 1])]  # no empty box
        drawn = draw_overlay(rgb, shown, boxes=drawable if boxes and len(drawable) else None)
        picture = np.ascontiguousarray(drawn[..., ::-1])
        if boxes and labels and len(self):
            thickness = max(1, int(line_width or round(sum(self.orig_shape) / 2 * 0.003)))
            for (x1, y1, _, _), score in zip(self.boxes.xyxy.tolist(), self.boxes.conf.tolist()):
                text = f"{self.names[0]} {score:.2f}" if conf else self.names[0]
                cv2.putText(picture, text, (int(x1), max(int(y1) - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                            thickness / 3, (255, 0, 0), max(1, thickness // 2), cv2.LINE_AA)
        if save:
            self._write(picture, filename)
        return picture

    def save(self, filename: str | None = None, **kwargs: Any) -> str:
        """Write :meth:`plot` (same keyword arguments) to ``filename`` (default ``results_<image name>``);
        returns the file name."""
        return self._write(self.plot(**kwargs), filename)

    def _write(self, picture: np.ndarray, filename: str | None) -> str:
        name = filename if filename is not None else f"results_{Path(self.path).name}"
        if Path(name).suffix.lower() not in {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}:
            raise InvalidInputError(f"cannot save a plot as {name!r}; give a .jpg or .png file name")
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(name), picture):
            raise InvalidInputError(f"OpenCV could not write {name}")
        return str(name)

    def to_sam_records(self, **kwargs: Any) -> list[dict]:
        """SAM automatic-mask-generator records of this view's instances
        (see :meth:`SegmentationResult.to_sam_records`)."""
        from fastsam.sam_records import sam_records

        return sam_records(self.result, indices=self.indices, **kwargs)

    def __repr__(self) -> str:
        return f"Results(path={self.path!r}, orig_shape={self.orig_shape}, instances={len(self)})"
