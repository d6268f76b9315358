"""Reading the evaluation sets: COCO-format instance sets (annotations JSON + image folder) and GrabCut-format
interactive sets (image + mask with an ignore label)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.io.image import IMAGE_SUFFIXES


@dataclass(frozen=True)
class CocoSet:
    """A COCO instances file and where its images are. ``images`` are the (id, path) pairs evaluated, sorted
    by id (the first ``max_images`` when limited)."""

    ground_truth: dict
    images: list[tuple[int, Path]]

    def annotations_of(self, image_id: int) -> list[dict]:
        return self._by_image.get(image_id, [])

    @property
    def _by_image(self) -> dict[int, list[dict]]:
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {}
            for ann in self.ground_truth["annotations"]:
                cached.setdefault(ann["image_id"], []).append(ann)
            object.__setattr__(self, "_index", cached)
        return cached


def load_coco_set(annotations: str | Path, images: str | Path | None = None,
                  max_images: int | None = None) -> CocoSet:
    """Read a COCO instances JSON. ``images`` is the image folder; by default the folder named after the file
    (``annotations/instances_val2017.json`` -> ``val2017/`` beside ``annotations/``)."""
    path = Path(annotations)
    if not path.is_file():
        raise InvalidInputError(f"no such annotations file: {path}")
    try:
        ground_truth = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path} is not a JSON file: {exc}") from exc
    if not isinstance(ground_truth, dict) or not isinstance(ground_truth.get("images"), list) or not isinstance(
            ground_truth.get("annotations"), list):
        raise InvalidInputError(f"{path} is not a COCO instances file (needs 'images' and 'annotations' lists)")
    if images is None:
        split = path.stem.split("_")[-1]
        images = path.parent.parent / split
    folder = Path(images)
    if not folder.is_dir():
        raise InvalidInputError(f"image folder {folder} not found; give it with --images")
    entries = sorted(ground_truth["images"], key=lambda img: img["id"])[:max_images]
    pairs = []
    for img in entries:
        image_path = folder / img["file_name"]
        if not image_path.is_file():
            raise InvalidInputError(f"image {img['file_name']} (id {img['id']}) is missing from {folder}")
        pairs.append((int(img["id"]), image_path))
    return CocoSet(ground_truth, pairs)


def annotation_rle(ann: dict, height: int, width: int) -> dict:
    """One annotation's mask as a compressed COCO RLE (bytes counts), from polygons or RLE."""
    from pycocotools import mask as coco_mask

    segmentation = ann["segmentation"]
    if isinstance(segmentation, list):
        return coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return coco_mask.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]
    return {"size": segmentation["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


@dataclass(frozen=True)
class InteractiveSample:
    """One image of an interactive set: its path and its mask's path (object 255, ignore ``ignore_value``)."""

    name: str
    image: Path
    mask: Path


def load_interactive_set(root: str | Path, max_images: int | None = None) -> list[InteractiveSample]:
    """A GrabCut-format set: ``root/data_GT/<name>.<image>`` and ``root/boundary_GT/<name>.<png|bmp>`` (also
    ``images/`` + ``masks/``), paired by file stem, sorted by name."""
    root = Path(root)
    for image_dir, mask_dir in (("data_GT", "boundary_GT"), ("images", "masks")):
        if (root / image_dir).is_dir() and (root / mask_dir).is_dir():
            break
    else:
        raise InvalidInputError(f"{root} is not a GrabCut-format set: expected data_GT/ and boundary_GT/ "
                                f"(or images/ and masks/) folders")
    masks = {p.stem: p for p in (root / mask_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    samples = []
    for image in sorted((root / image_dir).iterdir()):
        if image.suffix.lower() in IMAGE_SUFFIXES and image.stem in masks:
            samples.append(InteractiveSample(image.stem, image, masks[image.stem]))
    if not samples:
        raise InvalidInputError(f"no image in {root / image_dir} has a mask of the same name in {root / mask_dir}")
    return samples[:max_images]


def read_label_mask(path: Path, object_value: int = 255, ignore_value: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(object, ignore): two (H, W) boolean masks from a single-channel label image."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            labels = np.asarray(image.convert("L"))
    except OSError as exc:
        raise InvalidInputError(f"cannot read mask {path}: {exc}") from exc
    return labels == object_value, labels == ignore_value
