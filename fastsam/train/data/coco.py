"""COCO instances JSON (polygons, compressed or uncompressed RLE) with its image folder, class-agnostic.

Crowd annotations (``iscrowd`` 1, or ``ignore`` 1) are not training targets; they are kept as crowd regions so
that validation can mark them. A non-crowd RLE mask becomes polygons: the outer contour of each connected part,
parts under ``min_area`` square pixels dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.train.data.polygons import flat_to_polygon, polygon_area, rle_to_polygons
from fastsam.train.data.sample import Annotations, Sample, check_index, load_sample


def find_image_folder(json_path: Path, split: str | None = None) -> Path:
    """The image folder of a COCO JSON: ``split`` or the name after 'instances_' (instances_val2017.json ->
    val2017), looked up beside the JSON, beside its folder, and under images/ there."""
    stem = json_path.stem
    name = split or (stem.split("instances_", 1)[1] if "instances_" in stem else stem)
    for base in (json_path.parent, json_path.parent.parent):
        for candidate in (base / name, base / "images" / name, base / "images"):
            if candidate.is_dir():
                return candidate
    raise InvalidInputError(f"{json_path}: cannot find its image folder (looked for {name}/ and images/ beside "
                            f"it and its parent); give the folder explicitly")


class CocoSource:
    """Images of a COCO instances JSON (all of them, those without annotations included, in file order)."""

    def __init__(self, json_path: str | Path, image_folder: str | Path | None = None, min_area: float = 4.0) -> None:
        json_path = Path(json_path)
        try:
            document = json.loads(json_path.read_text())
            images = document["images"]
            annotations = document.get("annotations", [])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"{json_path}: not a readable COCO instances JSON ({exc})") from exc
        self.json_path = json_path
        self.image_folder = Path(image_folder) if image_folder is not None else find_image_folder(json_path)
        self.name = f"{json_path.parent.parent.name}/{self.image_folder.name}"
        self.min_area = float(min_area)
        self._images = images
        self._by_image: dict[int, list[dict]] = {image["id"]: [] for image in images}
        for annotation in annotations:
            self._by_image.setdefault(annotation.get("image_id"), []).append(annotation)

    def __len__(self) -> int:
        return len(self._images)

    def image_path(self, i: int) -> Path:
        return self.image_folder / self._images[check_index(i, len(self), self.name)]["file_name"]

    def annotations(self, i: int) -> Annotations:
        record = self._images[check_index(i, len(self), self.name)]
        height, width = int(record["height"]), int(record["width"])
        segments, crowds, traced = [], [], []
        for annotation in self._by_image.get(record["id"], []):
            segmentation = annotation.get("segmentation")
            if annotation.get("iscrowd", 0) or annotation.get("ignore", 0):
                if segmentation:
                    crowds.append(segmentation)
                continue
            polygons = self._polygons(segmentation, height, width)
            if polygons:
                segments.append(polygons)
                traced.append(isinstance(segmentation, dict))
        return Annotations(height, width, segments, crowds, traced)

    def _polygons(self, segmentation: object, height: int, width: int) -> list[np.ndarray]:
        if isinstance(segmentation, dict):
            if "size" not in segmentation:
                segmentation = {**segmentation, "size": [height, width]}
            return rle_to_polygons(segmentation, self.min_area)
        if isinstance(segmentation, list):
            polygons = [flat_to_polygon(flat) for flat in segmentation if len(flat) >= 6]
            return [p for p in polygons if polygon_area(p) >= self.min_area]
        return []

    def load(self, i: int) -> Sample:
        return load_sample(self, i)
