"""``open_source``: a training-data path -> the right reader, by its layout or by ``kind``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from fastsam.errors import InvalidInputError
from fastsam.train.data.bsds import BsdsSource
from fastsam.train.data.coco import CocoSource, find_image_folder
from fastsam.train.data.sa1b import Sa1bSource
from fastsam.train.data.sample import ConcatSource, InstanceSource
from fastsam.train.data.yolo import YoloSegSource, choose_split

KINDS = ("yolo", "coco", "bsds", "sa1b")


def detect_kind(path: Path) -> str:
    """'yolo' (images/ + labels/), 'coco' (a JSON file, or a folder with annotations/instances_*.json),
    'bsds' (images/ + groundTruth/) or 'sa1b' (X.jpg + X.json pairs)."""
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "coco"
        raise InvalidInputError(f"{path}: a file source must be a COCO instances .json")
    if not path.is_dir():
        raise InvalidInputError(f"{path}: no such file or folder")
    if (path / "images").is_dir() and (path / "labels").is_dir():
        return "yolo"
    if (path / "images").is_dir() and (path / "groundTruth").is_dir():
        return "bsds"
    if any((path / "annotations").glob("instances_*.json")):
        return "coco"
    if any(p.with_suffix(".jpg").is_file() for p in path.glob("*.json")):
        return "sa1b"
    raise InvalidInputError(f"{path}: not a known training-data layout (YOLO-seg images/ + labels/, COCO JSON, "
                            f"BSDS500 images/ + groundTruth/, SA-1B X.jpg + X.json); give kind= one of {KINDS}")


def _coco_json(folder: Path, split: str | None) -> Path:
    candidates = sorted((folder / "annotations").glob("instances_*.json"))
    splits = [p.stem.split("instances_", 1)[1] for p in candidates]
    chosen = split if split is not None else choose_split(folder, splits)
    if chosen not in splits:
        raise InvalidInputError(f"{folder}: no annotations/instances_{chosen}.json (have: {', '.join(splits)})")
    return folder / "annotations" / f"instances_{chosen}.json"


def open_source(path: str | Path, kind: str | None = None, split: str | None = None,
                bsds_annotator: int | str = 0) -> InstanceSource:
    """The reader for ``path``: auto-detected, or forced by ``kind`` (one of KINDS). ``split`` picks the
    subfolder (YOLO, BSDS), the instances file (COCO folder) or the image folder (COCO JSON);
    ``bsds_annotator`` which human segmentations of a BSDS500 image are used (see :class:`BsdsSource`)."""
    if not isinstance(path, (str, Path)) or str(path) == "":
        raise InvalidInputError(f"path must be a non-empty str or Path, got {path!r:.80}")
    if split is not None and (not isinstance(split, str) or "/" in split or split in ("", ".", "..")):
        raise InvalidInputError(f"split must be a folder name, got {split!r:.80}")
    path = Path(path)
    if kind is None:
        kind = detect_kind(path)
    if kind == "yolo":
        return YoloSegSource(path, split)
    if kind == "bsds":
        return BsdsSource(path, split, bsds_annotator)
    if kind == "sa1b":
        return Sa1bSource(path)
    if kind == "coco":
        if path.is_dir():
            json_path = _coco_json(path, split)
            return CocoSource(json_path, find_image_folder(json_path))
        return CocoSource(path, find_image_folder(path, split))
    raise InvalidInputError(f"kind must be one of {KINDS} or None, got {kind!r:.80}")


def split_spec(spec: str | Path) -> tuple[Path, str | None]:
    """``"PATH:SPLIT"`` -> (PATH, SPLIT) when PATH exists and SPLIT is a bare name (e.g. ``tiny_coco:train2017``);
    anything else (an existing path, a path that does not exist) -> (path, None)."""
    text = str(spec)
    head, sep, tail = text.rpartition(":")
    if sep and head and tail and "/" not in tail and "\\" not in tail and not Path(text).exists() \
            and Path(head).exists():
        return Path(head), tail
    return Path(text), None


def split_weight(spec: str | Path) -> tuple[str, float | None]:
    """``"PATH@W"`` or ``"PATH:SPLIT@W"`` -> (the spec without its weight, W) when W is a positive number and the
    whole text is not an existing path; anything else -> (spec, None)."""
    text = str(spec)
    head, sep, tail = text.rpartition("@")
    if not sep or not head or Path(text).exists():
        return text, None
    try:
        weight = float(tail)
    except ValueError:
        return text, None
    if not math.isfinite(weight) or weight <= 0:
        raise InvalidInputError(f"{text}: a source's sampling weight must be a positive number, got {tail!r}")
    return head, weight


def source_weights(specs: str | Path | Sequence[str | Path], weights: Sequence[float] | None = None
                   ) -> list[float] | None:
    """Sampling weight of each source: ``weights`` (one per spec; those written as ``PATH@W`` must agree), or
    those written as ``PATH@W`` (1 for a spec without one), or None (no weights anywhere: images drawn
    uniformly, whatever their source)."""
    specs = [specs] if isinstance(specs, (str, Path)) else list(specs)
    written = [split_weight(spec)[1] for spec in specs]
    if weights is not None:
        weights = list(weights)
        if any(w is not None for w in written) and [1.0 if w is None else w for w in written] != weights:
            raise InvalidInputError(f"sampling weights {weights} disagree with those written as PATH@W")
        if len(weights) != len(specs):
            raise InvalidInputError(f"{len(weights)} sampling weight(s) for {len(specs)} source(s)")
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0
                   for w in weights):
            raise InvalidInputError(f"sampling weights must be positive numbers, got {weights}")
        return [float(w) for w in weights]
    if all(w is None for w in written):
        return None
    return [1.0 if w is None else w for w in written]


def open_sources(specs: str | Path | Sequence[str | Path], kind: str | None = None,
                 split: str | None = None, bsds_annotator: int | str = 0) -> InstanceSource:
    """:func:`open_source` of one path, or a :class:`ConcatSource` of several. Each spec may name its own split
    as ``PATH:SPLIT``; ``split`` applies to the specs that do not. A sampling weight written ``PATH@W`` is
    ignored here (see :func:`source_weights`)."""
    if isinstance(specs, (str, Path)):
        specs = [specs]
    if not isinstance(specs, Sequence) or not specs:
        raise InvalidInputError(f"give one or more data paths, got {specs!r:.80}")
    sources = []
    for spec in specs:
        if not isinstance(spec, (str, Path)) or str(spec) == "":
            raise InvalidInputError(f"each data path must be a non-empty str or Path, got {spec!r:.80}")
        path, own_split = split_spec(split_weight(spec)[0])
        sources.append(open_source(path, kind, own_split if own_split is not None else split, bsds_annotator))
    return sources[0] if len(sources) == 1 else ConcatSource(sources)
