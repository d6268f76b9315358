"""The batch record format: one JSON object per line, one line per input image.

Everything mode (no prompts file)::

    {"file": "sub/a.jpg", "size": [height, width],
     "instances": [{"box": [x1, y1, x2, y2], "score": 0.93, "area": 1234,
                    "rle": {"size": [height, width], "counts": "..."}}, ...]}

``box`` is the detection box (xyxy, image pixels, the box that crops the mask), instances are ordered by
descending score, ``rle`` is COCO compressed RLE (``pycocotools.mask.decode`` reads it).

With a prompts file, ``instances`` is replaced by the prompt's answer::

    {"file": ..., "size": [h, w], "prompt": {"points": ..., "labels": ..., "boxes": ..., "per_point": false},
     "masks": [{"prompt": "box 0", "instance": 3, "box": [x1, y1, x2, y2], "score": ..., "area": ...,
                "rle": {...}}, ...]}

where ``box`` is the mask's tight box (exclusive max corner) and ``instance`` the index of the chosen instance
(null for a mask merged from several, as point prompts make).

An input that cannot be processed gives an error record instead, written to the errors file of its shard::

    {"file": "broken.jpg", "error": "ImageReadError", "reason": "broken.jpg: not a recognised image file"}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from fastsam.errors import InvalidInputError

PROMPT_FIELDS = ("points", "labels", "boxes", "per_point")


def _num(value: float, digits: int) -> float:
    return round(float(value), digits)


def everything_record(key: str, result: Any) -> dict:
    """The record of every instance of a :class:`~fastsam.result.SegmentationResult`."""
    h, w = result.image_size
    instances = [
        {"box": [_num(v, 2) for v in result.boxes[i]], "score": _num(result.scores[i], 5),
         "area": int(rle.area), "rle": rle.to_coco()}
        for i, rle in enumerate(result.rles)
    ]
    return {"file": key, "size": [int(h), int(w)], "instances": instances}


def prompt_record(key: str, result: Any, prompt: dict) -> dict:
    """The record of the masks ``prompt`` (points / labels / boxes / per_point) selects in ``result``."""
    selection = result.prompt(**prompt)
    h, w = result.image_size
    masks = [
        {"prompt": str(name), "instance": None if instance is None else int(instance),
         "box": [int(v) for v in mask.bbox()], "score": _num(score, 5), "area": int(mask.area),
         "rle": mask.to_coco()}
        for mask, instance, name, score in zip(selection.masks, selection.instance_ids, selection.prompts,
                                               selection.scores)
    ]
    return {"file": key, "size": [int(h), int(w)], "prompt": prompt, "masks": masks}


def error_record(key: str, exc: BaseException) -> dict:
    return {"file": key, "error": type(exc).__name__, "reason": str(exc) or repr(exc)}


def dumps(record: dict) -> str:
    """One JSONL line (no newline); NaN or infinities are refused rather than written as invalid JSON."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


def read_jsonl(path: str | Path) -> Iterator[dict]:
    with Path(path).open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


# ------------------------------------------------------------------------------------------------ prompts
def _check_prompt(entry: Any, where: str) -> tuple[str, dict]:
    if not isinstance(entry, dict):
        raise InvalidInputError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - {"file", *PROMPT_FIELDS})
    if unknown:
        raise InvalidInputError(f"{where}: unknown field(s) {', '.join(unknown)} "
                                f"(expected file, {', '.join(PROMPT_FIELDS)})")
    key = entry.get("file")
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"{where}: 'file' must be a non-empty string (the image's key: its path "
                                "relative to the source folder, or as written in the list file)")
    prompt = {k: entry[k] for k in PROMPT_FIELDS if entry.get(k) is not None}
    if "points" not in prompt and "boxes" not in prompt:
        raise InvalidInputError(f"{where}: give 'points' and/or 'boxes' for {key}")
    if "labels" in prompt and "points" not in prompt:
        raise InvalidInputError(f"{where}: 'labels' without 'points' for {key}")
    for name in ("points", "labels", "boxes"):
        if name in prompt and not isinstance(prompt[name], list):
            raise InvalidInputError(f"{where}: '{name}' must be a list for {key}")
    if "per_point" in prompt and not isinstance(prompt["per_point"], bool):
        raise InvalidInputError(f"{where}: 'per_point' must be true or false for {key}")
    return key, prompt


def load_prompts(path: str | Path) -> dict[str, dict]:
    """Read a prompts JSONL file: ``{"file": key, "points": [[x, y], ...], "labels": [1, 0, ...],
    "boxes": [[x1, y1, x2, y2], ...], "per_point": false}`` per line, at most one line per file.

    The structure is checked here (with the line number in the message); whether the coordinates fit the image
    is checked per image, and a prompt that does not fit becomes that image's error record.
    """
    path = Path(path)
    prompts: dict[str, dict] = {}
    lines: dict[str, int] = {}
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read prompts file {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{where}: not valid JSON ({exc.msg})") from None
            key, prompt = _check_prompt(entry, where)
            if key in prompts:
                raise InvalidInputError(f"{where}: second prompt for {key} (first on line {lines[key]}); "
                                        "give one line per image")
            prompts[key], lines[key] = prompt, number
    if not prompts:
        raise InvalidInputError(f"prompts file {path} holds no prompts")
    return prompts
