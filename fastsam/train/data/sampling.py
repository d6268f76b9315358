"""Per-source sampling weights for mixed training sets: how much of an epoch each source makes up."""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from fastsam.errors import InvalidInputError


class SourceWeightedSampler(Sampler[int]):
    """An epoch of ``sum(lengths)`` indices into sources concatenated in order (as ConcatSource): each draw picks
    source s with probability ``weights[s] / sum(weights)``, then one of its images uniformly (with replacement),
    so a small source with a large weight is seen several times per epoch and a large one with a small weight
    partly. Every rank draws the same sequence from ``seed`` (use a new seed per epoch), ``world`` times
    ceil(total / world) long, and keeps every ``world``-th index from ``rank`` on."""

    def __init__(self, lengths: Sequence[int], weights: Sequence[float], seed: int, rank: int = 0,
                 world: int = 1) -> None:
        if len(lengths) != len(weights) or not lengths:
            raise InvalidInputError(f"need one weight per source, got {len(weights)} for {len(lengths)}")
        if any(int(n) < 1 for n in lengths):
            raise InvalidInputError(f"every source needs images, got lengths {list(lengths)}")
        if not all(math.isfinite(w) and w > 0 for w in weights):
            raise InvalidInputError(f"sampling weights must be positive numbers, got {list(weights)}")
        if not 0 <= rank < world:
            raise InvalidInputError(f"rank {rank} out of range for world size {world}")
        self.lengths = np.asarray(lengths, np.int64)
        self.probabilities = np.asarray(weights, np.float64) / float(np.sum(weights))
        self.seed, self.rank, self.world = int(seed), int(rank), int(world)

    def __len__(self) -> int:
        # Every rank the same number (as DistributedSampler): ranks with fewer batches would hang DDP.
        return math.ceil(int(self.lengths.sum()) / self.world)

    def indices(self) -> np.ndarray:
        """The whole epoch's draws (all ranks), int64."""
        rng = np.random.default_rng(self.seed)
        total = len(self) * self.world
        source = rng.choice(len(self.lengths), size=total, p=self.probabilities)
        within = np.floor(rng.random(total) * self.lengths[source]).astype(np.int64)
        return (np.cumsum(self.lengths) - self.lengths)[source] + within

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.rank::self.world].tolist())
