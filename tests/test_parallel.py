"""map_in_chunks: contiguous chunks of similar weight, results in item order."""

from __future__ import annotations

import threading

import numpy as np

from fastsam.parallel import map_in_chunks


def test_chunks_cover_the_items_in_order_with_similar_weight():
    weights = np.array([5.0, 1, 1, 1, 1, 1, 5, 1, 1, 1, 1, 1])
    calls: list[tuple[int, int]] = []

    def work(first: int, stop: int) -> list[int]:
        calls.append((first, stop))
        return list(range(first, stop))

    assert map_in_chunks(work, weights, pieces=4, workers=2) == list(range(12))
    chunks = sorted(calls)
    # Cut before the first item whose running total reaches each quarter (5, 10, 15 of 20); a cut at 0 is dropped.
    assert chunks == [(0, 5), (5, 6), (6, 12)]
    assert max(weights[a:b].sum() for a, b in chunks) <= weights.sum() / 4 + weights.max()


def test_one_piece_one_worker_or_one_item_is_one_call_in_this_thread():
    caller = threading.get_ident()
    for weights, pieces, workers in ((np.ones(6), 1, 4), (np.ones(6), 4, 1), (np.ones(1), 4, 4), (np.ones(0), 4, 4)):
        calls = []

        def work(first: int, stop: int) -> list[int]:
            calls.append((first, stop, threading.get_ident()))
            return list(range(first, stop))

        assert map_in_chunks(work, weights, pieces, workers) == list(range(len(weights)))
        assert calls == [(0, len(weights), caller)]
