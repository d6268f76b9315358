"""``TrainingDataset``: a source as square, augmented training inputs with boxes and low-resolution masks.

Item i of epoch e draws every random choice from a generator seeded by (seed, e, i), so a run resumed at an
epoch sees exactly the batches an uninterrupted run would, in any worker process. Masks are rasterised from
the final polygons straight at S / mask_ratio: no full-resolution mask is ever made.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from fastsam.errors import InvalidInputError
from fastsam.train.data.augment import (AugmentConfig, augment_hsv, letterbox, random_affine, random_flips,
                                        resize_long_side)
from fastsam.train.data.copy_paste import copy_paste
from fastsam.train.data.mosaic import mosaic4
from fastsam.train.data.polygons import rasterize
from fastsam.train.data.sample import InstanceSource, Segments, check_index, check_source, segments_boxes


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r:.80}")
    return int(value)


class TrainingDataset(Dataset):
    """Items ``{"image": uint8 (3, S, S), "boxes": float32 (n, 4) xyxy input pixels, "masks": uint8 (n, S/r,
    S/r)}`` with S = imgsz and r = mask_ratio. With ``augment``: mosaic (probability hyp.mosaic, while
    ``mosaic`` is True; the trainer turns it off for the last epochs), random affine, HSV, flips, then
    copy-paste (probability hyp.copy_paste) of instances of another item framed without mosaic; without:
    letterbox only. ``cache`` keeps each image decoded and resized in memory (up to 3 S^2 bytes each; ~10
    instead of ~25 ms per mosaic item at S = 512); :meth:`preload` fills it before workers are forked."""

    def __init__(self, source: InstanceSource, imgsz: int, augment: bool, hyp: AugmentConfig | None = None,
                 mask_ratio: int = 4, seed: int = 0, cache: bool = False) -> None:
        check_source(source)
        if len(source) == 0:
            raise InvalidInputError(f"source {source.name} has no images")
        imgsz = _check_positive_int(imgsz, "imgsz")
        mask_ratio = _check_positive_int(mask_ratio, "mask_ratio")
        if imgsz % 32:
            raise InvalidInputError(f"imgsz must be a multiple of 32 (the network's stride), got {imgsz}")
        if imgsz % mask_ratio:
            raise InvalidInputError(f"imgsz {imgsz} must be a multiple of mask_ratio {mask_ratio}")
        if hyp is not None and not isinstance(hyp, AugmentConfig):
            raise InvalidInputError(f"hyp must be an AugmentConfig, got {type(hyp).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidInputError(f"seed must be an integer >= 0, got {seed!r:.80}")
        self.source = source
        self.imgsz = imgsz
        self.augment = bool(augment)
        self.hyp = hyp if hyp is not None else AugmentConfig()
        self.mask_ratio = mask_ratio
        self.seed = int(seed)
        self.mosaic = self.augment and self.hyp.mosaic > 0
        self.epoch = 0
        self.cache = bool(cache)
        self._cache: dict[int, tuple[np.ndarray, Segments]] = {}

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random draws the items use (call before each epoch, also when resuming)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise InvalidInputError(f"epoch must be an integer >= 0, got {epoch!r:.80}")
        if int(epoch) != self.epoch and getattr(self.source, "varies_by_epoch", False):
            self._cache.clear()  # e.g. BSDS500 draws an annotator per epoch: last epoch's polygons are stale
        self.epoch = int(epoch)
        if callable(getattr(self.source, "set_epoch", None)):
            self.source.set_epoch(self.epoch)

    def preload(self, progress: bool = False) -> None:
        """Fill the cache now (with ``cache``), so that DataLoader workers forked later share it instead of
        each decoding every image again."""
        if not self.cache:
            raise InvalidInputError("preload needs a dataset made with cache=True")
        # Decoding and resizing release the GIL: a thread per core.
        with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
            for _ in tqdm(pool.map(self._resized, range(len(self))), total=len(self),
                          desc=f"caching {self.source.name}", disable=not progress):
                pass

    def cache_bytes(self) -> int:
        """An upper bound of the cache's size: every image at imgsz on its long side, square."""
        return len(self) * self.imgsz * self.imgsz * 3

    def _resized(self, i: int) -> tuple[np.ndarray, Segments]:
        """Image i and its polygons, scaled so that the long side is imgsz."""
        if i in self._cache:
            return self._cache[i]
        sample = self.source.load(i)
        resized = resize_long_side(sample.image, sample.segments, self.imgsz, self.augment)
        if self.cache:
            self._cache[i] = resized
        return resized

    def frame(self, i: int) -> tuple[np.ndarray, Segments]:
        """Item i as a (S, S, 3) uint8 RGB image and its polygons in its pixels, before rasterising (and before
        copy-paste, which needs masks: see :meth:`__getitem__`)."""
        i = check_index(i, len(self), self.source.name)
        if not self.augment:
            return letterbox(*self._resized(i), self.imgsz)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.mosaic and rng.random() < self.hyp.mosaic:
            others = rng.integers(0, len(self), 3)
            return self._augmented(mosaic4([self._resized(k) for k in (i, *others)], self.imgsz, rng), rng)
        return self._augmented(letterbox(*self._resized(i), self.imgsz), rng)

    def _augmented(self, framed: tuple[np.ndarray, Segments], rng: np.random.Generator
                   ) -> tuple[np.ndarray, Segments]:
        image, segments = random_affine(*framed, self.imgsz, self.hyp, rng)
        image = augment_hsv(image, self.hyp, rng)
        return random_flips(image, segments, self.hyp, rng)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image, segments = self.frame(i)
        cells = self.imgsz // self.mask_ratio
        # Copy-paste draws from its own generator, so items it leaves alone are those of a run without it.
        rng = np.random.default_rng([self.seed, self.epoch, i, 1])
        if self.augment and self.hyp.copy_paste > 0 and rng.random() < self.hyp.copy_paste:
            donor = int(rng.integers(0, len(self)))
            donor_image, donor_segments = self._augmented(letterbox(*self._resized(donor), self.imgsz), rng)
            image, boxes, masks = copy_paste(image, segments, donor_image, donor_segments, self.mask_ratio, rng)
        else:
            boxes = segments_boxes(segments, self.imgsz, self.imgsz)
            masks = rasterize(segments, cells, cells, self.mask_ratio)
        return {
            # cv2.split is several times faster than a strided numpy transpose to channels-first.
            "image": torch.from_numpy(np.stack(cv2.split(image))),
            "boxes": torch.from_numpy(boxes),
            "masks": torch.from_numpy(masks),
        }


def collate_batch(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items into ``{"images": float32 (B, 3, S, S) in [0, 1], channels-last in memory, "batch_idx":
    int64 (M,), "boxes": float32 (M, 4) xyxy input pixels, "masks": float32 (M, S/r, S/r)}``; M = all
    instances of the batch."""
    if not items:
        raise InvalidInputError("collate_batch needs at least one item")
    counts = [len(item["boxes"]) for item in items]
    # (B, S, S, 3): the layout the network trains in, made here (in a loader worker) rather than by a copy in
    # the training process. numpy converts and scales in one pass, 2-3x faster than torch's on one thread.
    pixels = torch.stack([item["image"] for item in items]).permute(0, 2, 3, 1).numpy()
    images = np.divide(pixels, np.float32(255), dtype=np.float32, order="C")
    return {
        "images": torch.from_numpy(images).permute(0, 3, 1, 2),
        "batch_idx": torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts, dtype=torch.int64)),
        "boxes": torch.cat([item["boxes"] for item in items]).float(),
        "masks": torch.cat([item["masks"] for item in items]).float(),
    }
