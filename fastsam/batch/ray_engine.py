"""The Ray engine: the same job on a Ray cluster, through Ray Data ``map_batches`` over a pool of model actors.

The driver (this process) plans the job, streams the pending inputs to Ray in windows of whole shards, and
commits each shard in DST as its records come back, with exactly the local engine's files and resume rules.
Each actor holds one model replica (weights shipped through Ray's object store, so worker nodes need no copy)
and runs the same decode / network / encode pipeline as a local worker, with ``threads`` CPUs (and
``gpus_per_worker`` GPUs) reserved. Images are read by the actors, so on a multi-node cluster SRC must be
readable at the same path on every node (a shared file system); DST is written by the driver only.

Cluster address: ``address``, else ``$RAY_ADDRESS``, else a Ray already initialised in this process, else a
local Ray instance started for the job (bound to 127.0.0.1) and shut down at the end.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from fastsam.batch.job import Job, Settings, WorkItem
from fastsam.batch.local import Progress, ShardSink
from fastsam.batch.pipeline import Outcome, build_predictor, run_items
from fastsam.errors import InvalidInputError
from fastsam.extras import install_hint

#: Inputs per Ray dataset: the driver holds one window of work items; each window starts a fresh actor pool.
DEFAULT_WINDOW = 8192
BATCH_SIZE = 16


def import_ray(local: bool = True) -> Any:
    """Import Ray, or explain how to install it.

    local: a local instance will be started; if Ray is not imported yet it is put in single-node mode, where it
    binds and advertises 127.0.0.1 only (a Ray imported earlier keeps its own settings).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        import ray.data  # noqa: F401  (needs the 'data' extra: pandas, pyarrow)
    except ImportError as exc:
        raise InvalidInputError(f"--engine ray needs Ray Data ({exc.name or exc} is missing); install it with "
                                f"{install_hint('ray')} (or pip install 'ray[data]')") from None
    return ray


class _Replica:
    """A Ray Data actor: one model, the pipeline of a local worker."""

    def __init__(self, weights: list, settings: Settings, device: str, threads: int, lookahead: int) -> None:
        import ray

        blob = ray.get(weights[0])
        with tempfile.NamedTemporaryFile(prefix="fastsam-weights-", suffix=".bin", delete=False) as handle:
            handle.write(blob)
            local = handle.name
        del blob
        try:
            self.predictor = build_predictor(Settings(settings.model, local, **settings.predictor_kwargs()),
                                             device, threads)
        finally:
            os.unlink(local)
        self.lookahead = lookahead

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        items = [WorkItem(int(s), int(o), int(n), str(k), str(p), json.loads(q))
                 for s, o, n, k, p, q in zip(batch["shard"], batch["offset"], batch["shard_len"], batch["key"],
                                             batch["path"], batch["prompt"])]
        lines, errors = [], []
        for outcome in run_items(self.predictor, items, self.lookahead):
            lines.append(outcome.line)
            errors.append(outcome.is_error)
        return {"shard": batch["shard"], "offset": batch["offset"], "shard_len": batch["shard_len"],
                "key": batch["key"], "line": np.array(lines, dtype=object), "is_error": np.array(errors, dtype=bool)}


def _windows(job: Job, size: int) -> Iterator[list[dict]]:
    rows: list[dict] = []
    for shard in job.pending():
        rows.extend({"shard": i.shard, "offset": i.offset, "shard_len": i.shard_len, "key": i.key, "path": i.path,
                     "prompt": json.dumps(i.prompt)} for i in shard)
        if len(rows) >= size:
            yield rows
            rows = []
    if rows:
        yield rows


def _source_checkout() -> Path | None:
    """The folder holding this fastsam package when it is a source checkout (not installed)."""
    package = Path(__file__).resolve().parents[1]
    if "site-packages" in package.parts or "dist-packages" in package.parts:
        return None
    return package


def _job_runtime_env() -> dict:
    """For ray.init: ship this fastsam package to the cluster's workers unless it is installed."""
    package = _source_checkout()
    return {"py_modules": [str(package)]} if package else {}


def _task_runtime_env() -> dict | None:
    """For a Ray initialised by the caller: let this node's workers import this fastsam checkout."""
    package = _source_checkout()
    if package is None:
        return None
    path = os.pathsep.join(p for p in (str(package.parent), os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def run_ray(job: Job, device: str = "cpu", workers: int | None = None, threads: int | None = None,
            lookahead: int = 2, progress: Progress | None = None, address: str | None = None,
            gpus_per_worker: float | None = None, window: int = DEFAULT_WINDOW) -> int:
    """Compute every pending shard of ``job`` on Ray; returns the number of inputs computed.

    workers: actors (model replicas); default: the cluster's GPUs / gpus_per_worker on a GPU device, else its
    CPUs / threads. threads: torch threads and CPUs reserved per actor (default 1).
    """
    progress = progress or (lambda n, e: None)
    target = address or os.environ.get("RAY_ADDRESS")
    ray = import_ray(local=not target)
    started = False
    task_env = _task_runtime_env()
    if not ray.is_initialized():
        # No address: a private instance on this machine ("local"), never some other cluster found nearby.
        ray.init(address=target or "local", include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env=_job_runtime_env())
        started, task_env = True, None
    sink = ShardSink(job.out)
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.execution_options.preserve_order
    done = 0
    try:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        context.enable_progress_bars = False
        context.execution_options.preserve_order = True  # shards complete one after another
        on_gpu = str(device).startswith("cuda")
        resources = ray.cluster_resources()
        if gpus_per_worker is None:
            gpus_per_worker = 1.0 if on_gpu else 0.0
        if on_gpu and not resources.get("GPU"):
            raise InvalidInputError(f"device {device} asked for, but the Ray cluster has no GPU")
        threads = threads or 1
        if workers is None:
            if on_gpu:
                workers = max(1, int(resources.get("GPU", 1) // max(gpus_per_worker, 1e-9)))
            else:
                workers = max(1, int(resources.get("CPU", 1) // threads))
        weights = ray.put(Path(job.settings.weights).read_bytes())
        for rows in _windows(job, max(window, BATCH_SIZE * workers)):
            pool = max(1, min(workers, -(-len(rows) // BATCH_SIZE)))
            dataset = ray.data.from_items(rows).map_batches(
                _Replica, fn_constructor_args=([weights], job.settings, device, threads, lookahead),
                batch_size=BATCH_SIZE, compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=threads,
                num_gpus=gpus_per_worker or None, batch_format="numpy", runtime_env=task_env,
            )
            del rows
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for shard, offset, shard_len, key, line, is_error in zip(
                        batch["shard"], batch["offset"], batch["shard_len"], batch["key"], batch["line"],
                        batch["is_error"]):
                    item = WorkItem(int(shard), int(offset), int(shard_len), str(key), "")
                    sink.add(Outcome(item, str(line), bool(is_error)))
                    done += 1
                    progress(1, int(is_error))
    finally:
        sink.abort()
        context.enable_progress_bars, context.execution_options.preserve_order = saved
        if started:
            ray.shutdown()
    return done
