"""``run_batch``: segment a collection into sharded COCO-RLE JSONL, resumably, on the local or the Ray engine."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from fastsam.batch.job import DEFAULT_SHARD_SIZE, Job, Settings, Summary, now_iso
from fastsam.errors import InvalidInputError

ENGINES = ("local", "ray")


def _positive(value: Any, name: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")


def run_batch(source: str | os.PathLike, dest: str | os.PathLike, model: str | os.PathLike = "auto", *,
              prompts: str | os.PathLike | None = None, engine: str = "local", workers: int | None = None,
              threads: int | None = None, shard_size: int = DEFAULT_SHARD_SIZE, imgsz: int = 1024,
              conf: float = 0.4, iou: float = 0.9, max_det: int = 300, retina: bool = True, device: str = "cpu",
              lookahead: int = 2, ray_address: str | None = None, gpus_per_worker: float | None = None,
              progress: bool = False, callback: Callable[[int, int], None] | None = None) -> Summary:
    """Segment every image of ``source`` (folder, glob or list file) into ``dest``; resume if ``dest`` holds an
    unfinished job with the same inputs and settings.

    Writes ``dest/shard-NNNNN.jsonl`` (one record per image, see :mod:`fastsam.batch.records`),
    ``errors-NNNNN.jsonl`` for images that could not be read (or whose prompt does not fit), ``inputs.jsonl`` and
    ``manifest.json``. With ``prompts`` (a JSONL file keyed by image), records hold the prompts' masks instead of
    every instance. engine 'local': ``workers`` processes with ``threads`` torch threads each (defaults: on a
    CPU, one single-threaded process per core up to 8, which measured fastest; on a GPU, one; ``workers=1``
    runs in this process); engine 'ray': ``workers`` Ray actors (default: the cluster's CPUs / threads, or its
    GPUs), ``threads`` CPUs each (default 1). ``progress`` shows a progress bar on stderr; ``callback(done,
    errors)`` is called as inputs finish (counts of this run). Returns a :class:`~fastsam.batch.job.Summary`.
    """
    from tqdm import tqdm

    from fastsam.inference.predictor import check_settings
    from fastsam.model.zoo import resolve_weights

    check_settings(imgsz, conf, iou, max_det)
    if engine not in ENGINES:
        raise InvalidInputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    _positive(workers, "workers")
    _positive(threads, "threads")
    _positive(shard_size, "shard size", allow_none=False)
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
        raise InvalidInputError(f"lookahead must be an integer >= 0, got {lookahead!r}")
    weights = resolve_weights(model, progress=progress)
    settings = Settings(str(model), str(weights), int(imgsz), float(conf), float(iou), int(max_det), bool(retina))
    with Job(source, dest, settings, shard_size, prompts) as job:
        for warning in job.warnings:
            print(f"fastsam: warning: {warning}", file=sys.stderr)
        bar = tqdm(total=job.num_inputs, initial=job.done_inputs, unit="img", disable=not progress, file=sys.stderr,
                   smoothing=0.05, dynamic_ncols=True, desc="batch")
        counts = {"done": 0, "errors": 0}

        def tick(n: int, errors: int) -> None:
            counts["done"] += n
            if errors:
                counts["errors"] += errors
                bar.set_postfix_str(f"{counts['errors']} errors", refresh=False)
            bar.update(n)
            if callback is not None:
                callback(counts["done"], counts["errors"])

        run = {"engine": engine, "workers": workers, "threads": threads, "device": str(device), "started": now_iso()}
        start = time.perf_counter()
        try:
            if job.done_inputs == job.num_inputs:
                pass  # complete already: nothing to start
            elif engine == "local":
                from fastsam.batch.local import default_workers, run_local

                run_local(job, device=device, workers=workers or default_workers(device), threads=threads,
                          lookahead=lookahead, progress=tick)
            else:
                from fastsam.batch.ray_engine import run_ray

                run_ray(job, device=device, workers=workers, threads=threads, lookahead=lookahead, progress=tick,
                        address=ray_address, gpus_per_worker=gpus_per_worker)
        except BaseException as exc:
            bar.close()
            job.record_run({**run, "ended": now_iso(), "processed": counts["done"],
                            "status": "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc!r:.200}"})
            raise
        bar.close()
        seconds = time.perf_counter() - start
        return job.finish(counts["done"], seconds, {**run, "ended": now_iso(), "processed": counts["done"],
                                                    "seconds": round(seconds, 3), "status": "complete"})
