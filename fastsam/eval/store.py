"""What every benchmark task shares: a resumable per-image result cache, the model it runs, its output files.

A task's folder holds ``<task>.json`` (summary), ``<task>.md`` (table) and ``cache-<task>/``: one JSON record per
image, written atomically as soon as the image is done, next to ``settings.json``. Running the same command
again skips the cached images; different settings in the same folder are refused rather than mixed.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from fastsam.errors import InvalidInputError
from fastsam.io.export import atomic_write_bytes

Item = TypeVar("Item")


def _safe_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(key))


def _dump(document: Any) -> bytes:
    try:
        return json.dumps(document, indent=None, allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise InvalidInputError(f"cannot write JSON: {exc}") from exc


class ResultCache:
    """Per-image JSON records of one task in ``out_dir/cache-<task>/``, bound to the task's settings."""

    def __init__(self, out_dir: str | Path, task: str, settings: dict) -> None:
        self.folder = Path(out_dir) / f"cache-{task}"
        if self.folder.exists() and not self.folder.is_dir():
            raise InvalidInputError(f"{self.folder} exists and is not a folder")
        settings_path = self.folder / "settings.json"
        wanted = json.loads(_dump(settings))
        if settings_path.is_file():
            cached = json.loads(settings_path.read_text())
            if cached != wanted:
                changed = sorted(k for k in set(cached) | set(wanted) if cached.get(k) != wanted.get(k))
                raise InvalidInputError(
                    f"{self.folder} holds results computed with other settings ({', '.join(changed)}); "
                    f"use another --out folder or delete that one")
        else:
            atomic_write_bytes(settings_path, _dump(wanted))

    def _path(self, key: str) -> Path:
        return self.folder / f"{_safe_key(key)}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: str, record: dict) -> None:
        atomic_write_bytes(self._path(key), _dump(record))


def run_cached(items: Sequence[Item], key: Callable[[Item], str], compute: Callable[[Item], dict],
               cache: ResultCache, progress: bool = True, desc: str = "images") -> tuple[list[dict], int]:
    """``compute(item)`` for each item not yet in ``cache`` (storing each record as soon as it exists), under a
    progress bar. Returns (every item's record in order, how many were computed by this call)."""
    from tqdm import tqdm

    records, computed = [], 0
    for item in tqdm(items, desc=desc, unit="image", disable=not progress, file=sys.stderr):
        record = cache.get(key(item))
        if record is None:
            record = compute(item)
            cache.put(key(item), record)
            computed += 1
        records.append(record)
    return records, computed


def make_predictor(model: Any, *, imgsz: int, conf: float, iou: float, max_det: int, retina: bool = True,
                   device: str = "cpu") -> Any:
    """A :class:`~fastsam.inference.predictor.Predictor` for ``model``: a zoo name or checkpoint path (loaded),
    a YoloV8Seg (copied, since the predictor fuses batch norms in place and the caller may still train it), or
    a Predictor (used as is, with these settings passed on every call by the tasks)."""
    from fastsam.inference.predictor import Predictor
    from fastsam.model.yolov8_seg import YoloV8Seg
    from fastsam.model.zoo import load_model

    if model is None:
        raise InvalidInputError("a model is needed: a zoo name (FastSAM-s, FastSAM-x), a checkpoint path or a model")
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (str, Path)):
        model = load_model(model, progress=True)
    elif isinstance(model, YoloV8Seg):
        model = copy.deepcopy(model)
    else:
        raise InvalidInputError(f"model must be a zoo name, a checkpoint path or a YoloV8Seg, "
                                f"got {type(model).__name__}")
    return Predictor(model, device=device, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=retina)


def model_name(model: Any) -> str:
    """How the summary names the model: its path or zoo name, else its class."""
    return str(model) if isinstance(model, (str, Path)) else type(model).__name__


def check_max_images(max_images: object) -> int | None:
    if max_images is None:
        return None
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise InvalidInputError(f"max_images must be a positive integer or None, got {max_images!r}")
    return max_images


def write_task_outputs(out_dir: str | Path, task: str, summary: dict, markdown: str) -> dict:
    """Write ``out_dir/<task>.json`` and ``out_dir/<task>.md`` atomically; return the summary."""
    out = Path(out_dir)
    atomic_write_bytes(out / f"{task}.json", json.dumps(summary, indent=2, allow_nan=False).encode("utf-8"))
    atomic_write_bytes(out / f"{task}.md", markdown.encode("utf-8"))
    return summary


class Stopwatch:
    """Wall seconds since creation (for the summaries)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 2)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """A GitHub markdown table; floats with ``digits`` decimals, None as '-'."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
