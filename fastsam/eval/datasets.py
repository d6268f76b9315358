"""Reading the evaluation sets: COCO-format instance sets (annotations JSON + image folder) and interactive sets
as RITM / f-BRS package them (an image folder and a mask folder; gray, 0/255 or palette masks with a void label)."""

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


#: Interactive-set layouts as RITM / f-BRS package them: (image folder, mask folder, sets that use it).
INTERACTIVE_LAYOUTS = (
    ("data_GT", "boundary_GT", "GrabCut"),
    ("images", "masks", "Berkeley"),
    ("img", "gt", "DAVIS, COCO_MVal, SBD"),
    ("img", "masks", "SBD"),
)
VOID_GRAY = 128  # GrabCut and Berkeley: the unlabelled band along the object's boundary
VOID_PALETTE = 255  # PASCAL / SBD palette masks: the void index


@dataclass(frozen=True)
class InteractiveSample:
    """One object of an interactive set: its image, its mask file, and for a palette mask holding several
    objects the palette index of this one (None: the mask's only object)."""

    name: str
    image: Path
    mask: Path
    instance: int | None = None


def _mask_labels(path: Path) -> tuple[np.ndarray, bool]:
    """(H, W) labels of a mask file and whether they are palette indices. Colour masks count where any channel
    is set (their maximum), as DAVIS-style masks are read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P":
                return np.asarray(image), True
            data = np.asarray(image)
            colour = [k for k, band in enumerate(image.getbands()) if band != "A"]  # alpha is not a label
    except Exception as exc:  # noqa: BLE001 - any decoder failure means an unreadable mask file
        raise InvalidInputError(f"cannot read mask {path}: {type(exc).__name__}: {exc}") from exc
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.ndim == 3:
        data = data[..., colour].max(axis=2)
    return data, False


def _palette_objects(labels: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(labels) if v not in (0, VOID_PALETTE)]


def read_interactive_mask(path: Path, instance: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(object, void): two (H, W) boolean masks from an interactive set's mask file.

    Palette masks: index 0 is background, 255 void, ``instance`` the object (None: every other index).
    Other masks (gray, or colour read as their channel maximum): 0/1 masks mark the object with 1; otherwise
    values above 128 are the object and 128 is void (GrabCut's band), so 0/255 masks read as they are.
    """
    labels, palette = _mask_labels(path)
    if palette:
        void = labels == VOID_PALETTE
        found = labels == instance if instance is not None else (labels != 0) & ~void
        return found, void
    if instance is not None:
        raise InvalidInputError(f"mask {path} is not a palette image; it holds one object, not object {instance}")
    if labels.max(initial=0) <= 1:
        return labels == 1, np.zeros(labels.shape, bool)
    return labels > VOID_GRAY, labels == VOID_GRAY


def _interactive_layout(root: Path) -> tuple[Path, Path]:
    for image_dir, mask_dir, _sets in INTERACTIVE_LAYOUTS:
        if (root / image_dir).is_dir() and (root / mask_dir).is_dir():
            return root / image_dir, root / mask_dir
    known = "; ".join(f"{i}/ + {m}/ ({sets})" for i, m, sets in INTERACTIVE_LAYOUTS)
    raise InvalidInputError(f"{root} is not an interactive segmentation set in a known layout: expected {known}")


def load_interactive_set(root: str | Path, max_images: int | None = None) -> list[InteractiveSample]:
    """An interactive set in one of :data:`INTERACTIVE_LAYOUTS`: images and masks paired by file stem, sorted by
    name; a palette mask holding several objects gives one sample per object (``<stem>#<index>``)."""
    root = Path(root)
    image_dir, mask_dir = _interactive_layout(root)
    masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    samples = []
    for image in sorted(image_dir.iterdir()):
        if image.suffix.lower() not in IMAGE_SUFFIXES or image.stem not in masks:
            continue
        if max_images is not None and len(samples) >= max_images:
            break
        labels, palette = _mask_labels(masks[image.stem])
        objects = _palette_objects(labels) if palette else []
        if len(objects) > 1:
            samples += [InteractiveSample(f"{image.stem}#{k}", image, masks[image.stem], k) for k in objects]
        else:
            samples.append(InteractiveSample(image.stem, image, masks[image.stem]))
    if not samples:
        raise InvalidInputError(f"no image in {image_dir} has a mask of the same name in {mask_dir}")
    return samples[:max_images]
