"""Contiguous chunks of work run by a few threads (for compiled loops that release the GIL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def map_in_chunks(work: Callable[[int, int], Sequence[T]], weights: np.ndarray, pieces: int,
                  workers: int) -> list[T]:
    """``work(first, stop)`` over items [0, n) split into up to ``pieces`` contiguous chunks of about equal total
    ``weights`` (n,), run by ``workers`` threads, each taking the next chunk when it finishes; the chunks' results
    concatenated in item order. With one piece, one worker or fewer than two items: one call in this thread."""
    n = len(weights)
    if pieces < 2 or workers < 2 or n < 2:
        return list(work(0, n))
    cumulative = np.cumsum(weights, dtype=np.float64)
    cuts = np.searchsorted(cumulative, cumulative[-1] * np.arange(1, pieces) / pieces)
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < n}), n]
    if len(bounds) == 2:
        return list(work(0, n))
    with ThreadPoolExecutor(max_workers=min(workers, len(bounds) - 1)) as pool:
        return [item for part in pool.map(work, bounds[:-1], bounds[1:]) for item in part]
