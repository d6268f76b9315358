"""A least-recently-used store of all-instance results, bounded by their estimated size in bytes."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass

from fastsam.result import SegmentationResult
from fastsam.serve.errors import UnknownImageError

# Per-mask Python overhead (the RunLengthMask object and its two array headers), measured with sys.getsizeof.
_MASK_OVERHEAD = 300


def result_bytes(result: SegmentationResult) -> int:
    """Estimated memory of a result: image pixels, run arrays, boxes and scores, plus per-mask overhead."""
    total = result.boxes.nbytes + result.scores.nbytes + sys.getsizeof(result)
    if result.image is not None:
        total += result.image.nbytes
    for rle in result.rles:
        total += rle.starts.nbytes + rle.ends.nbytes + _MASK_OVERHEAD
    return int(total)


@dataclass(frozen=True)
class CachedImage:
    """One uploaded image's all-instance result; ``image_id`` is the SHA-256 of the uploaded bytes."""

    image_id: str
    result: SegmentationResult
    nbytes: int
    seconds: float  # duration of the all-instance pass


class ResultCache:
    """Thread-safe LRU of :class:`CachedImage` within ``budget_bytes``.

    The newest entry is always kept, even alone above the budget, so that an image just uploaded can be
    prompted; the upload and pixel limits bound that case.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[str, CachedImage] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._entries

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, entry: CachedImage) -> None:
        with self._lock:
            old = self._entries.pop(entry.image_id, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[entry.image_id] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.budget_bytes and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
                self.evictions += 1

    def find(self, image_id: str) -> CachedImage | None:
        """The entry (marked as recently used), or None."""
        with self._lock:
            entry = self._entries.get(image_id)
            if entry is not None:
                self._entries.move_to_end(image_id)
            return entry

    def get(self, image_id: str) -> CachedImage:
        """The entry (marked as recently used); :class:`UnknownImageError` when absent."""
        entry = self.find(image_id)
        if entry is None:
            raise UnknownImageError(f"no image with id {image_id!r}: never uploaded, deleted, or evicted from the "
                                    f"cache; upload it again")
        return entry

    def delete(self, image_id: str) -> None:
        """Forget an entry; :class:`UnknownImageError` when absent."""
        with self._lock:
            entry = self._entries.pop(image_id, None)
            if entry is not None:
                self._bytes -= entry.nbytes
        if entry is None:
            raise UnknownImageError(f"no image with id {image_id!r} to delete")

    def stats(self) -> dict:
        return {"images": len(self._entries), "bytes": self._bytes, "budget_bytes": self.budget_bytes,
                "evictions": self.evictions}
