"""One model replica's loop: decode ahead in a thread, run the network, encode records in another thread.

Decoding (PIL) and the network (torch) release the GIL, so reading the next images overlaps the current
forward pass; building the JSON line (RLE compression, prompt selection) overlaps the next one. At most
``lookahead`` decoded images and ``lookahead`` pending encodings are held, so memory does not grow with the
collection. ``lookahead=0`` runs everything in the calling thread.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from fastsam.batch.job import Settings, WorkItem
from fastsam.batch.records import dumps, error_record, everything_record, prompt_record
from fastsam.errors import FastSAMError, InvalidInputError
from fastsam.io.image import load_image


@dataclass(frozen=True)
class Outcome:
    """A finished input: its work item and its JSONL line (a record, or an error record when is_error)."""

    item: WorkItem
    line: str
    is_error: bool


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def build_predictor(settings: Settings, device: str = "cpu", threads: int | None = None) -> Any:
    """Load the weights and make a Predictor; ``threads`` sets torch's and OpenCV's threads in this process."""
    import cv2
    import torch

    from fastsam.inference.predictor import Predictor
    from fastsam.model.zoo import load_model

    if threads:
        torch.set_num_threads(int(threads))
        cv2.setNumThreads(int(threads))
    return Predictor(load_model(settings.weights, progress=False), device=device, **settings.predictor_kwargs())


def _decode(item: WorkItem, max_pixels: int) -> np.ndarray | _Failed:
    if item.prompt is not None and not item.prompt:
        return _Failed(InvalidInputError("no prompt for this image in the prompts file"))
    try:
        return load_image(item.path, max_pixels=max_pixels)
    except Exception as exc:  # an input file is untrusted data: any failure to decode it is that image's error
        return _Failed(exc)


def _encode(item: WorkItem, result: Any) -> Outcome:
    if item.prompt is None:
        return Outcome(item, dumps(everything_record(item.key, result)), False)
    try:
        return Outcome(item, dumps(prompt_record(item.key, result, item.prompt)), False)
    except (FastSAMError, ValueError, TypeError) as exc:  # the prompt (user data) does not fit this image
        return Outcome(item, dumps(error_record(item.key, exc)), True)


def _error(item: WorkItem, exc: BaseException) -> Outcome:
    return Outcome(item, dumps(error_record(item.key, exc)), True)


def _done(outcome: Outcome) -> Future:
    future: Future = Future()
    future.set_result(outcome)
    return future


def run_items(predictor: Any, items: Iterable[WorkItem], lookahead: int = 2) -> Iterator[Outcome]:
    """Outcomes of ``items``, in order. Images that cannot be read, and prompts that do not fit, give error
    outcomes; any other failure (of the model, or a bug) propagates."""
    max_pixels = predictor.max_pixels
    if lookahead <= 0:
        for item in items:
            rgb = _decode(item, max_pixels)
            if isinstance(rgb, _Failed):
                yield _error(item, rgb.exc)
                continue
            try:
                result = predictor(rgb, keep_image=False)
            except FastSAMError as exc:
                yield _error(item, exc)
                continue
            yield _encode(item, result)
        return

    source = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="fastsam-decode") as decoder, \
            ThreadPoolExecutor(1, thread_name_prefix="fastsam-encode") as encoder:
        decoding: deque[tuple[WorkItem, Future]] = deque()
        encoding: deque[Future] = deque()

        def feed() -> None:
            for item in source:
                decoding.append((item, decoder.submit(_decode, item, max_pixels)))
                return

        try:
            for _ in range(lookahead):
                feed()
            while decoding:
                item, future = decoding.popleft()
                feed()
                rgb = future.result()
                if isinstance(rgb, _Failed):
                    encoding.append(_done(_error(item, rgb.exc)))
                else:
                    try:
                        result = predictor(rgb, keep_image=False)
                    except FastSAMError as exc:
                        encoding.append(_done(_error(item, exc)))
                    else:
                        encoding.append(encoder.submit(_encode, item, result))
                    del rgb
                while encoding and (len(encoding) > lookahead or encoding[0].done()):
                    yield encoding.popleft().result()
            while encoding:
                yield encoding.popleft().result()
        finally:
            for _, future in decoding:
                future.cancel()
            for future in encoding:
                future.cancel()
