"""The answer to a prompt: a list of masks, each with where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastsam.rle import RunLengthMask, union


@dataclass
class Selection:
    """Masks chosen by prompts on one segmentation result.

    masks[k] is a mask of the image; instance_ids[k] the instance it is (None for a mask merged from several
    instances, as the point prompt makes); prompts[k] which prompt produced it ('box 0', 'points', 'point 2').
    """

    image_size: tuple[int, int]
    masks: list[RunLengthMask] = field(default_factory=list)
    instance_ids: list[int | None] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.masks)

    def add(self, mask: RunLengthMask, instance_id: int | None, prompt: str, score: float) -> None:
        self.masks.append(mask)
        self.instance_ids.append(instance_id)
        self.prompts.append(prompt)
        self.scores.append(float(score))

    def extend(self, other: "Selection") -> "Selection":
        for item in zip(other.masks, other.instance_ids, other.prompts, other.scores):
            self.add(*item)
        return self

    @property
    def boxes(self) -> np.ndarray:
        """(K, 4) tight xyxy boxes of the masks (exclusive max corner)."""
        return np.array([m.bbox() for m in self.masks], dtype=np.float32).reshape(-1, 4)

    @property
    def areas(self) -> np.ndarray:
        return np.array([m.area for m in self.masks], dtype=np.int64)

    def mask_array(self) -> np.ndarray:
        """(K, H, W) boolean masks."""
        h, w = self.image_size
        if not self.masks:
            return np.zeros((0, h, w), bool)
        return np.stack([m.decode() for m in self.masks])

    def merged(self) -> RunLengthMask:
        """Union of all selected masks."""
        return union(self.masks, *self.image_size)
