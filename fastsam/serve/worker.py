"""Runs all-instance passes in a bounded pool of worker threads, away from the server's event loop.

The network releases the GIL (torch operators, the nogil mask kernel), so while a pass runs the event loop
keeps answering health checks and prompts on cached results. At most ``workers`` passes run at once and
``queue_size`` more may wait; beyond that :class:`ServerBusyError` is raised at once instead of queueing
without bound. Two uploads of the same bytes share one pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from fastsam.inference.predictor import Predictor
from fastsam.result import SegmentationResult
from fastsam.serve.cache import CachedImage, ResultCache, result_bytes
from fastsam.serve.errors import ServerBusyError


def image_id_of(data: bytes) -> str:
    """The id of uploaded bytes: their SHA-256, hex."""
    return hashlib.sha256(data).hexdigest()


class SegmentationWorker:
    """Segments uploaded image bytes once each and stores the result in ``cache``.

    ``segment`` must be awaited on the server's event loop (the counters are only touched there).
    """

    def __init__(self, predictor: Predictor | Callable[[bytes], SegmentationResult], cache: ResultCache,
                 workers: int = 1, queue_size: int = 8) -> None:
        self.predictor = predictor
        self.cache = cache
        self.workers = workers
        self.queue_size = queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastsam-pass")
        self._inflight: dict[str, asyncio.Future] = {}
        self._admitted = 0  # running + waiting passes
        self.completed = 0

    def stats(self) -> dict:
        return {"workers": self.workers, "queue_size": self.queue_size, "in_flight": self._admitted,
                "running": min(self._admitted, self.workers), "waiting": max(0, self._admitted - self.workers),
                "completed": self.completed}

    async def segment(self, data: bytes) -> tuple[CachedImage, bool]:
        """(entry, reused): the cached result for these bytes, computing it in a worker when new.

        reused is True when the result was cached or another request was already computing it.
        Raises :class:`ServerBusyError` when every worker is busy and the queue is full.
        """
        image_id = image_id_of(data)
        entry = self.cache.find(image_id)
        if entry is not None:
            return entry, True
        pending = self._inflight.get(image_id)
        if pending is not None:
            return await asyncio.shield(pending), True
        if self._admitted >= self.workers + self.queue_size:
            raise ServerBusyError(f"{self.workers} worker(s) busy and {self.queue_size} image(s) queued; "
                                  f"retry in a few seconds")
        self._admitted += 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._run, image_id, data)
        self._inflight[image_id] = future
        # The pass finishes (and is cached) even when the client that asked for it goes away.
        future.add_done_callback(lambda _: self._finish(image_id))
        return await asyncio.shield(future), False

    def _finish(self, image_id: str) -> None:
        self._admitted -= 1
        self.completed += 1
        self._inflight.pop(image_id, None)

    def _run(self, image_id: str, data: bytes) -> CachedImage:
        start = time.perf_counter()
        result = self.predictor(data)
        # Computed once here, so that prompts (in other threads) only read them.
        _ = result.areas, result.mask_bounds
        entry = CachedImage(image_id, result, result_bytes(result), time.perf_counter() - start)
        self.cache.put(entry)
        return entry

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
