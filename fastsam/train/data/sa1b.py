"""SA-1B, read directly: a folder of ``sa_N.jpg`` with ``sa_N.json``.

Each JSON is ``{"image": {"width", "height", "file_name", ...}, "annotations": [{"segmentation": {"size":
[h, w], "counts": str}, "bbox", "area", ...}]}``; every mask is an instance, traced into polygons
(outer contour of each part; parts under ``min_area`` square pixels dropped; ``tolerance`` > 0 simplifies).
Each mask is decoded inside its box only (~60 ms for 100 masks of a 1500 x 2250 image); to train, convert
once with :func:`fastsam.train.data.sa1b_convert.convert_sa1b` and read the YOLO-seg result.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastsam.errors import InvalidInputError
from fastsam.train.data.polygons import rle_to_polygons
from fastsam.train.data.sample import Annotations, Sample, check_index, load_sample


def sa1b_annotations(record: dict, min_area: float = 4.0, tolerance: float = 0.0, where: str = "SA-1B JSON") \
        -> Annotations:
    """The instances of one parsed SA-1B JSON document."""
    try:
        info = record["image"]
        height, width = int(info["height"]), int(info["width"])
        masks = record["annotations"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{where}: not an SA-1B annotation file (needs image.height/width and "
                                f"annotations)") from exc
    segments = []
    for annotation in masks:
        segmentation = annotation.get("segmentation") if isinstance(annotation, dict) else None
        if not isinstance(segmentation, dict):
            raise InvalidInputError(f"{where}: an annotation has no RLE segmentation")
        polygons = rle_to_polygons(segmentation, min_area, tolerance)
        if polygons:
            segments.append(polygons)
    return Annotations(height, width, segments, traced=[True] * len(segments))


def read_sa1b_json(path: Path) -> dict:
    """Parse one SA-1B annotation file, with a clear error when it is not JSON."""
    try:
        return json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: unreadable SA-1B annotation file ({exc})") from exc


class Sa1bSource:
    """Every ``*.jpg`` of a folder that has a same-named ``*.json`` beside it (sorted by name)."""

    def __init__(self, root: str | Path, min_area: float = 4.0, tolerance: float = 0.0) -> None:
        root = Path(root)
        if not root.is_dir():
            raise InvalidInputError(f"{root}: not a folder")
        self.root, self.min_area, self.tolerance = root, float(min_area), float(tolerance)
        self.name = root.name
        self._images = sorted(p for p in root.glob("*.jpg") if p.with_suffix(".json").is_file())
        if not self._images:
            raise InvalidInputError(f"{root}: no SA-1B pairs (X.jpg with X.json)")

    def __len__(self) -> int:
        return len(self._images)

    def image_path(self, i: int) -> Path:
        return self._images[check_index(i, len(self), self.name)]

    def annotations(self, i: int) -> Annotations:
        path = self.image_path(i).with_suffix(".json")
        return sa1b_annotations(read_sa1b_json(path), self.min_area, self.tolerance, str(path))

    def load(self, i: int) -> Sample:
        return load_sample(self, i)
