"""The types every training-data reader shares: one image's annotations, a loaded sample, the source protocol.

Training is class-agnostic: an instance is only its outline, a list of polygons (one per connected part), each
a (k, 2) float32 array of x, y in continuous image pixels (pixel (i, j) covers [i, i + 1) x [j, j + 1)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

from fastsam.errors import ImageReadError, InvalidInputError

Polygon = np.ndarray  # (k, 2) float32 x, y in image pixels
Segments = list[list[Polygon]]  # per instance, its polygons


@dataclass
class Annotations:
    """One image's ground truth without its pixels: size, instance outlines and crowd regions.

    ``traced`` says per instance (empty: none) whether its outlines were traced from a pixel mask, through the
    centres of its boundary pixels (see polygons.py): such an instance is exactly the pixels a fill gives, and
    validation scores it as that mask rather than as a polygon. ``crowds`` are COCO segmentations (RLE dict
    or polygon lists) of crowd / ignore regions: never training targets, kept so validation can mark them.
    """

    height: int
    width: int
    segments: Segments
    crowds: list = field(default_factory=list)
    traced: list[bool] = field(default_factory=list)


@dataclass
class Sample:
    """A training sample: ``image`` uint8 (H, W, 3) RGB, ``segments`` per instance, ``boxes`` float32 (n, 4)
    xyxy pixels (the extent of each instance's polygons, clipped to the image). Crowds are excluded."""

    image: np.ndarray
    segments: Segments
    boxes: np.ndarray


@runtime_checkable
class InstanceSource(Protocol):
    """A random-access collection of annotated images (every instance is class "object"). ``annotations``
    (size and outlines without decoding the image) is optional: TrainingDataset needs only ``load``, and
    coco_ground_truth falls back to it."""

    name: str

    def __len__(self) -> int: ...

    def image_path(self, i: int) -> Path: ...

    def annotations(self, i: int) -> Annotations: ...

    def load(self, i: int) -> Sample: ...


def segments_boxes(segments: Segments, width: float, height: float) -> np.ndarray:
    """(n, 4) float32 xyxy extent of each instance's polygons, clipped to [0, width] x [0, height]."""
    boxes = np.zeros((len(segments), 4), np.float32)
    for k, polygons in enumerate(segments):
        points = np.concatenate(polygons, axis=0)
        boxes[k, :2] = points.min(axis=0)
        boxes[k, 2:] = points.max(axis=0)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    return boxes


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file into uint8 (H, W, 3) RGB (OpenCV: fast; EXIF orientation applied as everywhere)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"{path}: missing, unreadable or not an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file as :func:`read_rgb` decodes it, from its header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            # EXIF orientations 5-8 turn the picture a quarter, as OpenCV's decoder applies them.
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageReadError(f"{path}: missing, unreadable or not an image ({exc})") from exc
    return height, width


def check_index(i: object, length: int, name: str) -> int:
    """``i`` as an int in [0, length), or InvalidInputError (negative indices count from the end)."""
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise InvalidInputError(f"{name}: index must be an integer, got {i!r:.80}")
    j = int(i) + length if i < 0 else int(i)
    if not 0 <= j < length:
        raise InvalidInputError(f"{name}: index {i} out of range for {length} images")
    return j


def load_sample(source: InstanceSource, i: int) -> Sample:
    """The default ``load``: the image and its non-crowd instances, with a check that the sizes agree."""
    annotations = source.annotations(i)
    image = read_rgb(source.image_path(i))
    if image.shape[:2] != (annotations.height, annotations.width):
        raise ImageReadError(f"{source.image_path(i)}: image is {image.shape[1]}x{image.shape[0]} but its "
                             f"annotations are for {annotations.width}x{annotations.height}")
    return Sample(image, annotations.segments, segments_boxes(annotations.segments, image.shape[1], image.shape[0]))


def source_annotations(source: InstanceSource, i: int) -> Annotations:
    """Image i's annotations; from ``load`` (decoding the image) for a source without ``annotations``."""
    if callable(getattr(source, "annotations", None)):
        return source.annotations(i)
    sample = source.load(i)
    return Annotations(sample.image.shape[0], sample.image.shape[1], sample.segments)


def check_source(source: object) -> None:
    """InvalidInputError unless ``source`` has what every consumer needs: len(), name, image_path, load."""
    for attribute in ("__len__", "image_path", "load"):
        if not callable(getattr(source, attribute, None)):
            raise InvalidInputError(f"not an InstanceSource (no {attribute}; see open_source): "
                                    f"{type(source).__name__}")
    if not isinstance(getattr(source, "name", None), str):
        raise InvalidInputError(f"not an InstanceSource (no name): {type(source).__name__}")


class ConcatSource:
    """Several sources as one, indexed in order."""

    def __init__(self, sources: Sequence[InstanceSource]) -> None:
        sources = list(sources)
        if not sources:
            raise InvalidInputError("ConcatSource needs at least one source")
        for source in sources:
            check_source(source)
        self.sources = sources
        self.name = "+".join(source.name for source in sources)
        self._ends = np.cumsum([len(source) for source in sources])

    def __len__(self) -> int:
        return int(self._ends[-1])

    @property
    def varies_by_epoch(self) -> bool:
        return any(getattr(source, "varies_by_epoch", False) for source in self.sources)

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to the sources whose items depend on it."""
        for source in self.sources:
            if callable(getattr(source, "set_epoch", None)):
                source.set_epoch(epoch)

    def _locate(self, i: int) -> tuple[InstanceSource, int]:
        i = check_index(i, len(self), self.name)
        k = int(np.searchsorted(self._ends, i, side="right"))
        return self.sources[k], i - (int(self._ends[k - 1]) if k else 0)

    def image_path(self, i: int) -> Path:
        source, j = self._locate(i)
        return source.image_path(j)

    def annotations(self, i: int) -> Annotations:
        source, j = self._locate(i)
        return source_annotations(source, j)

    def load(self, i: int) -> Sample:
        source, j = self._locate(i)
        return source.load(j)
