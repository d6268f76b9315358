"""BSDS500 region partitions: ``images/<split>/X.jpg`` with ``groundTruth/<split>/X.mat``.

Each ``.mat`` holds several human segmentations of the image (one per annotator), each a label map that
partitions the image into regions. Every region of one segmentation is an instance ("everything" training).
``annotator`` picks the segmentation: an index (default 0, the first; taken modulo the number an image has),
"all", where each (image, annotator) pair is one item, so an epoch sees every human segmentation once, or
"epoch", one item per image whose annotator is drawn per (epoch, image) (:meth:`BsdsSource.set_epoch`), so
a run sees every annotator over its epochs at the cost of one segmentation per image and epoch.
Regions smaller than ``min_area`` pixels are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.train.data.polygons import mask_to_polygons
from fastsam.train.data.sample import Annotations, Sample, check_index, load_sample
from fastsam.train.data.yolo import choose_split

#: Annotator choices besides an index: every (image, annotator) pair an item, or one drawn per epoch.
ANNOTATOR_MODES = ("all", "epoch")


def read_bsds_segmentations(mat_path: Path) -> list[np.ndarray]:
    """The human segmentations of one BSDS500 ``.mat``: (H, W) integer label maps, regions numbered from 1."""
    from scipy.io import loadmat

    try:
        truth = loadmat(str(mat_path))["groundTruth"]
        return [np.asarray(truth[0, k]["Segmentation"][0, 0]) for k in range(truth.shape[1])]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InvalidInputError(f"{mat_path}: not a BSDS500 ground-truth .mat ({exc})") from exc


def region_windows(labels: np.ndarray, min_area: int) -> Iterator[tuple[int, tuple[slice, slice]]]:
    """(label, (row slice, column slice) of its bounding box) of each region of a label map (0 = unlabelled)
    with at least ``min_area`` pixels."""
    from scipy.ndimage import find_objects

    areas = np.bincount(labels.ravel())
    for value, window in enumerate(find_objects(labels), 1):
        if window is not None and areas[value] >= min_area:
            yield value, window


def regions_to_segments(labels: np.ndarray, min_area: int) -> list[list[np.ndarray]]:
    """Polygons of each region of a label map (0 = unlabelled), regions under ``min_area`` pixels skipped."""
    segments = []
    for value, window in region_windows(labels, min_area):
        crop = labels[window] == value
        polygons = mask_to_polygons(crop, (window[1].start, window[0].start))
        if polygons:
            segments.append(polygons)
    return segments


class BsdsSource:
    """A BSDS500 folder (images/ and groundTruth/), one split (train, val or test)."""

    def __init__(self, root: str | Path, split: str | None = None, annotator: int | str = 0,
                 min_area: int = 100) -> None:
        root = Path(root)
        if not (root / "groundTruth").is_dir() or not (root / "images").is_dir():
            raise InvalidInputError(f"{root}: a BSDS500 folder needs images/ and groundTruth/")
        if split is None:
            split = choose_split(root, sorted(p.name for p in (root / "groundTruth").iterdir() if p.is_dir()))
        if annotator not in ANNOTATOR_MODES and (isinstance(annotator, bool) or not isinstance(annotator, int)
                                                 or annotator < 0):
            raise InvalidInputError(f"annotator must be an index >= 0, 'all' or 'epoch', got {annotator!r}")
        self.root, self.split, self.annotator, self.min_area = root, split, annotator, int(min_area)
        self.name = f"{root.name}/{split}"
        self.epoch = 0
        self.varies_by_epoch = annotator == "epoch"  # an item's instances change with set_epoch: not cacheable
        mats = sorted((root / "groundTruth" / split).glob("*.mat"))
        if not mats:
            raise InvalidInputError(f"{root}: no groundTruth/{split}/*.mat files")
        # Items are (mat file, annotator index); a fixed index is taken modulo each file's annotator count.
        if annotator == "all":
            self._items = [(mat, k) for mat in mats for k in range(len(read_bsds_segmentations(mat)))]
        else:  # an index, or "epoch" (drawn when loading)
            self._items = [(mat, annotator) for mat in mats]

    def __len__(self) -> int:
        return len(self._items)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose annotator draws ``annotator="epoch"`` uses (TrainingDataset.set_epoch passes it on)."""
        self.epoch = int(epoch)

    def image_path(self, i: int) -> Path:
        mat, _ = self._items[check_index(i, len(self), self.name)]
        return self.root / "images" / self.split / (mat.stem + ".jpg")

    def annotations(self, i: int) -> Annotations:
        mat, annotator = self._items[check_index(i, len(self), self.name)]
        segmentations = read_bsds_segmentations(mat)
        if annotator == "epoch":
            annotator = int(np.random.default_rng([self.epoch, i]).integers(len(segmentations)))
        labels = segmentations[annotator % len(segmentations)]
        segments = regions_to_segments(labels, self.min_area)
        return Annotations(labels.shape[0], labels.shape[1], segments, traced=[True] * len(segments))

    def load(self, i: int) -> Sample:
        return load_sample(self, i)
