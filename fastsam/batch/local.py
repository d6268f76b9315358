"""The local engine: one model replica in this process, or ``workers`` replicas in spawned processes.

Each replica runs :func:`fastsam.batch.pipeline.run_items` (decode ahead, network, encode behind) with
``cores / workers`` torch threads. With several workers, whole shards are handed out through a bounded queue
and each worker commits the shards it computed; the parent only plans, shows progress and watches the workers.
Workers die with the parent (PR_SET_PDEATHSIG on Linux), so a killed job leaves no process behind.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import threading
import traceback
from typing import Any, Callable, Iterator

from fastsam import errors as fastsam_errors
from fastsam.batch.job import Job, Settings, WorkItem
from fastsam.batch.pipeline import Outcome, available_cores, build_predictor, run_items
from fastsam.batch.shards import OutputFolder, ShardWriter
from fastsam.errors import FastSAMError

Progress = Callable[[int, int], None]  # (inputs done, of which errors)
_POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class ShardSink:
    """Routes outcomes to their shard's writer and commits a shard when its last input arrives (outcomes of one
    shard may come in any order)."""

    def __init__(self, out: OutputFolder) -> None:
        self.out = out
        self.writers: dict[int, ShardWriter] = {}

    def add(self, outcome: Outcome) -> bool:
        """Add an outcome; True when it completed (and committed) its shard."""
        item = outcome.item
        writer = self.writers.get(item.shard)
        if writer is None:
            writer = self.writers[item.shard] = self.out.writer(item.shard)
        writer.add(outcome.line, outcome.is_error)
        if writer.records + writer.errors == item.shard_len:
            del self.writers[item.shard]
            writer.commit()
            return True
        return False

    def abort(self) -> None:
        """Drop the shards in progress (their temporary files)."""
        for writer in self.writers.values():
            writer.abort()
        self.writers.clear()


def default_workers(device: str = "cpu") -> int:
    """On a CPU, one process per core (up to 8): single-threaded replicas measured several times faster than one
    multi-threaded replica on a busy machine (benchmarks/batch.py). On a GPU, one."""
    return 1 if str(device) != "cpu" else min(available_cores(), 8)


def default_threads(workers: int) -> int:
    return max(1, available_cores() // max(1, workers))


def run_local(job: Job, device: str = "cpu", workers: int = 1, threads: int | None = None, lookahead: int = 2,
              progress: Progress | None = None) -> int:
    """Compute every pending shard of ``job``; returns the number of inputs computed."""
    progress = progress or (lambda n, e: None)
    workers = max(1, min(workers, job.num_shards - len(job.done)))  # a worker takes whole shards
    threads = threads or default_threads(workers)
    if workers <= 1:
        return _run_here(job, device, threads, lookahead, progress)
    return _run_processes(job, device, workers, threads, lookahead, progress)


def _items(job: Job) -> Iterator[WorkItem]:
    for shard in job.pending():
        yield from shard


def _run_here(job: Job, device: str, threads: int, lookahead: int, progress: Progress) -> int:
    import cv2
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    predictor = build_predictor(job.settings, device, threads)
    sink = ShardSink(job.out)
    done = 0
    try:
        for outcome in run_items(predictor, _items(job), lookahead):
            sink.add(outcome)
            done += 1
            progress(1, int(outcome.is_error))
    finally:
        sink.abort()
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
    return done


# ------------------------------------------------------------------------------------------ worker processes
def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def _worker(settings: Settings, device: str, threads: int, lookahead: int, root: str, width: int, parent: int,
            tasks: Any, results: Any) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    sink = ShardSink(OutputFolder(root, width))

    def items() -> Iterator[WorkItem]:
        while True:
            shard = tasks.get()
            if shard is None:
                return
            yield from shard

    try:
        predictor = build_predictor(settings, device, threads)
        results.put(("ready",))
        for outcome in run_items(predictor, items(), lookahead):
            committed = sink.add(outcome)
            results.put(("item", int(outcome.is_error)))
            if committed:
                results.put(("shard", outcome.item.shard))
        results.put(("exit",))
    except FastSAMError as exc:
        results.put(("error", type(exc).__name__, str(exc)))
    except BaseException:
        results.put(("fatal", traceback.format_exc()))
    finally:
        sink.abort()


def _raise_worker_error(name: str, message: str) -> None:
    cls = getattr(fastsam_errors, name, None)
    if isinstance(cls, type) and issubclass(cls, FastSAMError):
        raise cls(message)
    raise FastSAMError(message)


def _run_processes(job: Job, device: str, workers: int, threads: int, lookahead: int, progress: Progress) -> int:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    tasks = ctx.Queue(maxsize=workers)
    results = ctx.Queue()
    stop = threading.Event()

    def feed() -> None:
        try:
            for shard in itertools.chain(job.pending(), [None] * workers):
                while not stop.is_set():
                    try:
                        tasks.put(shard, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # reading inputs.jsonl failed: tell the main loop
            results.put(("fatal", f"planning failed: {exc!r}"))

    args = (job.settings, device, threads, lookahead, str(job.out.root), job.out.width, os.getpid(), tasks, results)
    procs = [ctx.Process(target=_worker, args=args, name=f"fastsam-batch-{n}", daemon=True) for n in range(workers)]
    # Started with SIGINT ignored, so a Ctrl-C during their start-up (imports) does not reach them either, and
    # with OpenMP / MKL pools sized like torch's (unless the user sized them), so workers do not oversubscribe.
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        previous = None
    pools = {name: str(threads) for name in _POOL_VARIABLES if name not in os.environ}
    os.environ.update(pools)
    try:
        for proc in procs:
            proc.start()
    finally:
        for name in pools:
            os.environ.pop(name, None)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    feeder = threading.Thread(target=feed, name="fastsam-batch-feeder", daemon=True)
    feeder.start()
    done = exited = 0
    try:
        while exited < workers:
            try:
                message = results.get(timeout=0.5)
            except queue.Empty:
                for proc in procs:
                    if proc.exitcode not in (None, 0):
                        raise RuntimeError(f"batch worker {proc.name} died (exit code {proc.exitcode}); rerun the "
                                           "same command to resume")
                continue
            kind = message[0]
            if kind == "item":
                done += 1
                progress(1, message[1])
            elif kind == "exit":
                exited += 1
            elif kind == "error":
                _raise_worker_error(message[1], message[2])
            elif kind == "fatal":
                raise RuntimeError(f"a batch worker failed:\n{message[1]}")
    finally:
        stop.set()
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        feeder.join(timeout=2)
        tasks.cancel_join_thread()
        results.cancel_join_thread()
    return done
