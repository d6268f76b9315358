"""YOLO-seg folders: ``images/<split>/X.jpg`` with ``labels/<split>/X.txt`` (or ``images/`` and ``labels/``).

A label line is ``cls x1 y1 x2 y2 ...``: one polygon with coordinates normalised by the image's width and
height; the class is ignored (one class). A line of exactly four numbers is a detection box ``cx cy w h`` and
becomes a rectangle. A missing label file means an image without instances.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.io.image import IMAGE_SUFFIXES
from fastsam.train.data.sample import (Annotations, Sample, check_index, image_size, read_rgb,
                                       segments_boxes)


def parse_yolo_labels(text: str, width: float, height: float, where: str = "labels") -> list[list[np.ndarray]]:
    """Instances (one polygon each, in pixels) of a YOLO-seg label file's text for a width x height image."""
    segments = []
    scale = np.array([width, height], np.float32)
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = np.array(fields[1:], np.float32)
        except ValueError as exc:
            raise InvalidInputError(f"{where}:{number}: not numbers: {line[:80]!r}") from exc
        if values.size == 4:
            cx, cy, w, h = values
            values = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy - h / 2, cx + w / 2, cy + h / 2,
                               cx - w / 2, cy + h / 2], np.float32)
        if values.size % 2 or values.size < 6:
            raise InvalidInputError(f"{where}:{number}: a polygon needs 3 or more x y pairs, got {values.size} "
                                    f"numbers after the class")
        segments.append([values.reshape(-1, 2) * scale])
    return segments


def format_yolo_line(polygon: np.ndarray, width: float, height: float, class_id: int = 0) -> str:
    """One YOLO-seg label line for a (k, 2) polygon in pixels of a width x height image."""
    normalised = (polygon / np.array([width, height], np.float32)).clip(0.0, 1.0).reshape(-1)
    return f"{class_id} " + " ".join(f"{v:.6f}" for v in normalised)


class YoloSegSource:
    """A YOLO-seg dataset folder (such as coco128-seg); ``split`` names the subfolder of images/ and labels/."""

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        root = Path(root)
        images = root / "images"
        if not images.is_dir() or not (root / "labels").is_dir():
            raise InvalidInputError(f"{root}: a YOLO-seg folder needs images/ and labels/")
        if split is None:
            split = choose_split(root, sorted(p.name for p in images.iterdir() if p.is_dir()))
        folder = images / split if split else images
        if not folder.is_dir():
            raise InvalidInputError(f"{root}: no images/{split} folder")
        self.root = root
        self.split = split
        self.name = f"{root.name}/{split}" if split else root.name
        self._images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self._labels = root / "labels" / split if split else root / "labels"

    def __len__(self) -> int:
        return len(self._images)

    def image_path(self, i: int) -> Path:
        return self._images[check_index(i, len(self), self.name)]

    def label_path(self, i: int) -> Path:
        return self._labels / (self.image_path(i).stem + ".txt")

    def _segments(self, i: int, height: int, width: int) -> list[list[np.ndarray]]:
        path = self.label_path(i)
        if not path.is_file():
            return []
        return parse_yolo_labels(path.read_text(), width, height, str(path))

    def annotations(self, i: int) -> Annotations:
        height, width = image_size(self.image_path(i))
        return Annotations(height, width, self._segments(i, height, width))

    def load(self, i: int) -> Sample:
        # Labels are normalised: scale them by the decoded image itself, no header read needed.
        image = read_rgb(self.image_path(i))
        height, width = image.shape[:2]
        segments = self._segments(i, height, width)
        return Sample(image, segments, segments_boxes(segments, width, height))


def choose_split(root: Path, splits: list[str]) -> str:
    """The split to use when none is given: '' for a flat folder, the only one, or the only 'train*' one."""
    if not splits:
        return ""
    if len(splits) == 1:
        return splits[0]
    training = [s for s in splits if s.startswith("train")]
    if len(training) == 1:
        return training[0]
    raise InvalidInputError(f"{root}: several splits ({', '.join(splits)}); choose one with split=")
