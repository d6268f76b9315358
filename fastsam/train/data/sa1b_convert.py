"""SA-1B -> YOLO-seg: ``DST/images/<name>.jpg`` (a copy) and ``DST/labels/<name>.txt`` (class 0 polygons).

Sources are folders of ``sa_N.jpg`` + ``sa_N.json``, ``.tar`` files as distributed (streamed member by member,
one tar at a time, never extracted), or folders of tars. Images are converted in parallel processes; each
file is written atomically and the label file last, so an image counts as done exactly when its label exists.
Resuming skips finished tars without opening them (``DST/manifest.json``) and finished images by their label.
A bad image is recorded in ``DST/errors.jsonl`` and the run goes on.
"""

from __future__ import annotations

import json
import os
import tarfile
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Iterator, Sequence

from tqdm import tqdm

from fastsam.errors import FastSAMError, InvalidInputError
from fastsam.io.export import atomic_write_bytes
from fastsam.train.data.polygons import merge_polygons
from fastsam.train.data.sa1b import sa1b_annotations
from fastsam.train.data.yolo import format_yolo_line

MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"


@dataclass
class ConvertSummary:
    """What a conversion run did: ``converted`` this run, ``skipped`` (already done), ``errors`` this run."""

    dest: Path
    converted: int = 0
    skipped: int = 0
    errors: int = 0
    instances: int = 0


@dataclass(frozen=True)
class _Unit:
    """A folder of image/JSON pairs or one tar; ``key`` identifies a finished tar in the manifest."""

    path: Path
    is_tar: bool

    @property
    def key(self) -> str:
        return f"{self.path.resolve()}:{self.path.stat().st_size}" if self.is_tar else str(self.path.resolve())


def _units(sources: Sequence[Path]) -> list[_Unit]:
    units = []
    for source in sources:
        if source.is_file() and tarfile.is_tarfile(source):
            units.append(_Unit(source, True))
        elif source.is_dir():
            tars = sorted(p for p in source.iterdir() if p.suffix == ".tar" and p.is_file())
            units.extend(_Unit(tar, True) for tar in tars)
            if any(source.glob("*.json")) or not tars:
                units.append(_Unit(source, False))
        else:
            raise InvalidInputError(f"{source}: not a folder or a tar file")
    return units


def _pairs(unit: _Unit) -> Iterator[tuple[str, bytes | Path, bytes | Path]]:
    """(name, image, annotation) per image, as paths for a folder or bytes streamed from a tar."""
    if not unit.is_tar:
        for json_path in sorted(unit.path.glob("*.json")):
            image = json_path.with_suffix(".jpg")
            if image.is_file():
                yield json_path.stem, image, json_path
        return
    pending: dict[str, dict[str, bytes]] = {}
    # "r|*": a stream, read once front to back; SA-1B tars hold each jpg next to its json.
    with tarfile.open(unit.path, mode="r|*") as archive:
        for member in archive:
            name = os.path.basename(member.name)
            stem, suffix = os.path.splitext(name)
            if not member.isfile() or suffix not in (".jpg", ".json") or name.startswith("._"):
                continue
            handle = archive.extractfile(member)
            parts = pending.setdefault(stem, {})
            parts[suffix] = handle.read() if handle is not None else b""
            if len(parts) == 2:
                del pending[stem]
                yield stem, parts[".jpg"], parts[".json"]


def _read(data: bytes | Path) -> bytes:
    return data.read_bytes() if isinstance(data, Path) else data


def convert_one(name: str, image: bytes | Path, annotation: bytes | Path, dest: Path, tolerance: float,
                min_area: float) -> int:
    """Convert one SA-1B image; returns its instance count. Raises FastSAMError / OSError on bad input."""
    from PIL import Image, UnidentifiedImageError

    try:
        record = json.loads(_read(annotation))
    except ValueError as exc:
        raise InvalidInputError(f"annotation is not JSON ({exc})") from exc
    truth = sa1b_annotations(record, min_area, tolerance, f"{name}.json")
    image_bytes = _read(image)
    try:
        with Image.open(BytesIO(image_bytes)) as decoded:
            width, height = decoded.size
    except (OSError, UnidentifiedImageError) as exc:
        raise InvalidInputError(f"image is not readable ({exc})") from exc
    if (height, width) != (truth.height, truth.width):
        raise InvalidInputError(f"image is {width}x{height} but its JSON says {truth.width}x{truth.height}")
    lines = [format_yolo_line(merge_polygons(polygons), width, height) for polygons in truth.segments]
    atomic_write_bytes(dest / "images" / f"{name}.jpg", image_bytes)
    atomic_write_bytes(dest / "labels" / f"{name}.txt", ("\n".join(lines) + "\n" if lines else "").encode())
    return len(lines)


def _convert_safely(name: str, image: bytes | Path, annotation: bytes | Path, dest: Path, tolerance: float,
                    min_area: float) -> tuple[str, int, str | None]:
    try:
        return name, convert_one(name, image, annotation, dest, tolerance, min_area), None
    except (FastSAMError, OSError, ValueError) as exc:
        return name, 0, f"{type(exc).__name__}: {exc}"


def _load_manifest(dest: Path) -> dict:
    path = dest / MANIFEST
    if not path.is_file():
        return {"format": "fastsam-sa1b-yolo-seg/1", "done": {}}
    try:
        manifest = json.loads(path.read_text())
        manifest["done"]  # noqa: B018 - the key must be there
        return manifest
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{path}: not a conversion manifest ({exc}); remove it or choose another DST") \
            from exc


def convert_sa1b(src: str | Path | Sequence[str | Path], dst: str | Path, workers: int | None = None,
                 resume: bool = True, progress: bool = True, tolerance: float = 1.0,
                 min_area: float = 4.0) -> ConvertSummary:
    """Convert SA-1B (folders, tars or folders of tars) into a YOLO-seg folder ``dst`` (images/, labels/).

    ``workers`` processes (default: all cores; 0 or 1 converts in this process). ``tolerance`` simplifies
    outlines (Douglas-Peucker, pixels; 0 keeps every contour vertex); parts under ``min_area`` square pixels
    are dropped; an instance with several parts becomes one polygon joined by zero-width bridges.
    ``resume`` skips what a previous run finished; without it everything is converted again.
    """
    sources = [Path(s) for s in ([src] if isinstance(src, (str, os.PathLike)) else src)]
    if not sources:
        raise InvalidInputError("convert_sa1b needs at least one source")
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InvalidInputError(f"workers must be an integer >= 0, got {workers!r}")
    for value, label in ((tolerance, "tolerance"), (min_area, "min_area")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InvalidInputError(f"{label} must be a number >= 0, got {value!r}")
    dest = Path(dst)
    if dest.exists() and not dest.is_dir():
        raise InvalidInputError(f"{dest}: exists and is not a folder")
    units = _units(sources)
    (dest / "labels").mkdir(parents=True, exist_ok=True)
    (dest / "images").mkdir(parents=True, exist_ok=True)
    manifest = _load_manifest(dest) if resume else {"format": "fastsam-sa1b-yolo-seg/1", "done": {}}
    summary = ConvertSummary(dest)
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    bar = tqdm(desc="convert-sa1b", unit="img", disable=not progress)
    try:
        with open(dest / ERRORS, "a") as errors:
            for unit in units:
                if resume and unit.key in manifest["done"]:
                    summary.skipped += manifest["done"][unit.key]["images"]
                    continue
                bar.set_postfix_str(unit.path.name)
                try:
                    counts = _convert_unit(unit, dest, resume, pool, max(workers, 1), tolerance, min_area,
                                           summary, errors, bar)
                except (tarfile.TarError, EOFError, OSError) as exc:
                    # A truncated or corrupt download: what it held so far is converted; the next run retries.
                    summary.errors += 1
                    errors.write(json.dumps({"source": str(unit.path), "name": None,
                                             "error": f"{type(exc).__name__}: {exc}"}) + "\n")
                    errors.flush()
                    continue
                # Only a tar is final; a folder is rescanned (cheaply: done images are skipped by name).
                if unit.is_tar:
                    manifest["done"][unit.key] = counts
                    atomic_write_bytes(dest / MANIFEST, json.dumps(manifest, indent=1).encode())
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        bar.close()
    if pool is not None:
        pool.shutdown()
    return summary


def _convert_unit(unit: _Unit, dest: Path, resume: bool, pool: ProcessPoolExecutor | None, workers: int,
                  tolerance: float, min_area: float, summary: ConvertSummary, errors, bar: tqdm) -> dict:
    """Convert one folder or tar, at most 2 x workers images in flight; returns its manifest entry."""
    counts = {"images": 0, "errors": 0}
    in_flight: set[Future] = set()
    if not unit.is_tar:  # a folder's size is known up front (a tar's only once read)
        bar.total = (bar.total or 0) + sum(1 for p in unit.path.glob("*.json") if p.with_suffix(".jpg").is_file())
        bar.refresh()

    def record(name: str, instances: int, error: str | None) -> None:
        counts["images"] += 1
        if error is None:
            summary.converted += 1
            summary.instances += instances
        else:
            counts["errors"] += 1
            summary.errors += 1
            errors.write(json.dumps({"source": str(unit.path), "name": name, "error": error}) + "\n")
            errors.flush()
        bar.update()

    def collect() -> None:
        nonlocal in_flight
        done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
        for future in done:
            record(*future.result())

    for name, image, annotation in _pairs(unit):
        if resume and (dest / "labels" / f"{name}.txt").is_file():
            counts["images"] += 1
            summary.skipped += 1
            bar.update()
            continue
        if pool is None:
            record(*_convert_safely(name, image, annotation, dest, tolerance, min_area))
            continue
        in_flight.add(pool.submit(_convert_safely, name, image, annotation, dest, tolerance, min_area))
        while len(in_flight) >= 2 * workers:
            collect()
    while in_flight:
        collect()
    return counts
