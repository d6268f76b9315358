"""Writing selected masks out: COCO results JSON, per-instance PNGs, label maps and polygon JSON.

Every exporter takes a :class:`~fastsam.prompts.selection.Selection` (or a
:class:`~fastsam.result.SegmentationResult`, exported as all of its instances) and decodes one mask at a time,
inside its bounding box where it can, so memory stays at a few image-sized planes whatever the mask count.
Files are written atomically (:mod:`fastsam.io.atomic`): to a temporary file in the target folder, then renamed
over the target.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Union

import cv2
import numpy as np

from fastsam import rle_kernels
from fastsam.errors import InvalidInputError
from fastsam.io.atomic import atomic_write_bytes, check_file_path, make_folder
from fastsam.parallel import map_in_chunks
from fastsam.prompts.selection import Selection
from fastsam.rle import RunLengthMask, RunTable

PathLike = Union[str, "os.PathLike[str]"]

#: Category every exported mask gets: FastSAM is class-agnostic.
CATEGORIES = [{"id": 1, "name": "object"}]


# --------------------------------------------------------------------------------------------- helpers
def as_selection(masks: object) -> Selection:
    """A Selection from a Selection or anything with ``everything()`` (a SegmentationResult)."""
    if not isinstance(masks, Selection) and callable(getattr(masks, "everything", None)):
        masks = masks.everything()  # type: ignore[union-attr]
    if not isinstance(masks, Selection):
        raise InvalidInputError(f"expected a Selection or SegmentationResult, got {type(masks).__name__}")
    h, w = masks.image_size
    for k, mask in enumerate(masks.masks):
        if not isinstance(mask, RunLengthMask):
            raise InvalidInputError(f"mask {k} is a {type(mask).__name__}, not a RunLengthMask")
        if mask.size != (h, w):
            raise InvalidInputError(f"mask {k} is {mask.width}x{mask.height} but the selection's image is {w}x{h}")
    return masks


def _check_int(value: object, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an integer, got {value!r:.80}")
    if value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_stem(stem: object) -> str:
    if not isinstance(stem, str) or not stem or stem in (".", "..") or "/" in stem or "\\" in stem or "\0" in stem:
        raise InvalidInputError(f"stem must be a non-empty file name without folders, got {stem!r:.80}")
    return stem


def _encode_image(array: np.ndarray, suffix: str) -> bytes:
    ok, encoded = cv2.imencode(suffix, array)
    if not ok:
        raise InvalidInputError(f"OpenCV cannot encode a {array.dtype} image of shape {array.shape} as {suffix}")
    return encoded.tobytes()


def _write_json(path: PathLike, document: Any, to_text: Callable[[Any], str] = json.dumps) -> Path:
    try:
        text = to_text(document, allow_nan=False)
    except ValueError as exc:  # NaN or infinite scores would make invalid JSON
        raise InvalidInputError(f"cannot write JSON: {exc}") from exc
    return atomic_write_bytes(path, text.encode("utf-8"))


def _coco_json_text(document: dict, allow_nan: bool = False) -> str:
    """``json.dumps(document)`` of a :func:`coco_document`, with each mask's counts string spliced in instead of
    passing through the JSON encoder: COCO strings hold only the characters '0' to 'o', of which only the
    backslash needs escaping. Same text, written in 60% of the time for noisy masks (megabytes of counts)."""
    annotations = document["annotations"]
    blanks = [dict(a, segmentation=dict(a["segmentation"], counts="")) for a in annotations]
    # Each empty counts string is one '"counts": ""' in the text, in order: inside a JSON string the quotes would
    # be escaped, and no other key is named counts.
    parts = json.dumps(dict(document, annotations=blanks), allow_nan=allow_nan).split('"counts": ""')
    if len(parts) != len(annotations) + 1:  # not a document of ours: no shortcut
        return json.dumps(document, allow_nan=allow_nan)
    pieces = [parts[0]]
    for annotation, part in zip(annotations, parts[1:]):
        pieces += ('"counts": "', annotation["segmentation"]["counts"].replace("\\", "\\\\"), '"', part)
    return "".join(pieces)


def _xywh(x1: int, y1: int, x2: int, y2: int) -> list[float]:
    """COCO's [x, y, w, h] of a box given by its corners (exclusive max corner)."""
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def _instance_id(value: int | None) -> int | None:
    return None if value is None else int(value)


# ------------------------------------------------------------------------------------------------ COCO
#: Below this many runs in all, the masks' COCO fields are computed in the calling thread.
PARALLEL_RUNS = 100_000


def _mask_fields(masks: list[RunLengthMask]) -> list[tuple[dict, int, list[float]]]:
    """(COCO RLE, area, xywh bbox) of each mask, in order (none for none). The masks' runs go into one table and
    through one compiled call (strings, areas, boxes: no per-mask Python work but building the results); with
    many runs (noisy masks: megabytes of counts) the table is split into one contiguous chunk of masks per core,
    of similar run counts, computed in parallel (the call releases the GIL)."""
    if not masks:
        return []
    table = RunTable.from_masks(masks)
    height, width = table.height, table.width

    def fields(first: int, stop: int) -> list[tuple[dict, int, list[float]]]:
        chars, char_offsets, areas, boxes = rle_kernels.coco_fields(
            table.starts, table.ends, table.offsets, first, stop, height, height * width)
        text = chars.tobytes().decode("ascii")
        bounds = char_offsets.tolist()
        return [({"size": [height, width], "counts": text[a:b]}, area, _xywh(*box))
                for a, b, area, box in zip(bounds[:-1], bounds[1:], areas.tolist(), boxes.tolist())]

    workers = os.cpu_count() or 1
    pieces = workers if table.starts.size >= PARALLEL_RUNS else 1
    return map_in_chunks(fields, np.diff(table.offsets), pieces, workers)


def to_coco_annotations(selection: Selection | Any, image_id: int = 1, category_id: int = 1,
                        start_id: int = 1) -> list[dict]:
    """COCO instance annotations, one per mask, ids ``start_id, start_id + 1, ...``.

    segmentation: compressed RLE ``{'size': [h, w], 'counts': str}``; area: pixels (int); bbox: tight
    [x, y, w, h] in pixels (floats); plus the mask's score, the prompt that chose it and its instance id.
    """
    selection = as_selection(selection)
    image_id = _check_int(image_id, "image_id")
    category_id = _check_int(category_id, "category_id")
    start_id = _check_int(start_id, "start_id")
    annotations = []
    for k, ((segmentation, area, bbox), instance_id, prompt, score) in enumerate(
            zip(_mask_fields(selection.masks), selection.instance_ids, selection.prompts, selection.scores)):
        annotations.append({
            "id": start_id + k,
            "image_id": image_id,
            "category_id": category_id,
            "segmentation": segmentation,
            "area": area,
            "bbox": bbox,
            "score": float(score),
            "iscrowd": 0,
            "prompt": str(prompt),
            "instance_id": _instance_id(instance_id),
        })
    return annotations


def coco_document(selection: Selection | Any, file_name: str, image_id: int = 1) -> dict:
    """A COCO file for one image: ``{'images': [...], 'annotations': [...], 'categories': [...]}``."""
    if not isinstance(file_name, str) or not file_name:
        raise InvalidInputError(f"file_name must be a non-empty string, got {file_name!r:.80}")
    selection = as_selection(selection)
    image_id = _check_int(image_id, "image_id")
    h, w = selection.image_size
    return {
        "images": [{"id": image_id, "file_name": file_name, "height": int(h), "width": int(w)}],
        "annotations": to_coco_annotations(selection, image_id=image_id),
        "categories": [dict(c) for c in CATEGORIES],
    }


def write_coco_json(selection: Selection | Any, path: PathLike, file_name: str | None = None,
                    image_id: int = 1) -> Path:
    """Write :func:`coco_document` to ``path`` (atomically, parents created); returns the path.

    file_name defaults to the result's source file name when there is one, else ``<path stem>.png``.
    """
    target = check_file_path(path)
    if file_name is None:
        source = getattr(selection, "source", None)
        file_name = Path(source).name if isinstance(source, (str, os.PathLike)) and str(source) else f"{target.stem}.png"
    return _write_json(target, coco_document(selection, file_name, image_id=image_id), _coco_json_text)


# ------------------------------------------------------------------------------------------ raster files
def write_instance_pngs(selection: Selection | Any, out_dir: PathLike, stem: str) -> list[Path]:
    """One 8-bit (H, W) PNG per mask, 255 inside and 0 outside, named ``{stem}_{k:03d}.png`` in ``out_dir``."""
    selection = as_selection(selection)
    stem = _check_stem(stem)
    if not isinstance(out_dir, (str, os.PathLike)) or str(out_dir) == "":
        raise InvalidInputError(f"out_dir must be a folder path, got {out_dir!r:.80}")
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"out_dir {str(folder)!r} is a file, not a folder")
    make_folder(folder)
    written = []
    for k, mask in enumerate(selection.masks):
        pixels = mask.decode().astype(np.uint8) * np.uint8(255)
        written.append(atomic_write_bytes(folder / f"{stem}_{k:03d}.png", _encode_image(pixels, ".png")))
    return written


def label_map(selection: Selection | Any) -> np.ndarray:
    """(H, W) uint16 labels: 0 background, k + 1 where mask k is.

    Larger masks are painted first, so where masks overlap the smallest keeps its label (ties keep the
    selection's order: the later mask of equal area ends on top).
    """
    selection = as_selection(selection)
    if len(selection) > np.iinfo(np.uint16).max:
        raise InvalidInputError(f"{len(selection)} masks do not fit a 16-bit label map (at most 65535)")
    h, w = selection.image_size
    labels = np.zeros((h, w), np.uint16)
    order = np.argsort(-selection.areas, kind="stable")
    for k in order:
        mask = selection.masks[k]
        x1, y1, x2, y2 = mask.bbox()
        if x2 <= x1:
            continue
        labels[y1:y2, x1:x2][mask.decode_region(x1, y1, x2, y2)] = k + 1
    return labels


def write_label_map_png(selection: Selection | Any, path: PathLike) -> Path:
    """Write :func:`label_map` as a PNG: 8-bit when there are at most 255 masks, else 16-bit."""
    target = check_file_path(path)
    if target.suffix.lower() != ".png":
        raise InvalidInputError(f"label maps are written as PNG; {str(target)!r} does not end in .png")
    selection = as_selection(selection)
    labels = label_map(selection)
    if len(selection) <= 255:
        labels = labels.astype(np.uint8)
    return atomic_write_bytes(target, _encode_image(labels, ".png"))


# ---------------------------------------------------------------------------------------------- polygons
def _polygons(mask: np.ndarray, min_area: float, offset: tuple[int, int] = (0, 0)) -> list[list[float]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=offset)
    polygons = []
    for contour in contours:
        if len(contour) < 3 or cv2.contourArea(contour) < min_area:
            continue
        polygons.append(contour.reshape(-1).astype(float).tolist())
    return polygons


def _check_min_area(min_area: object) -> float:
    if isinstance(min_area, bool) or not isinstance(min_area, (int, float, np.integer, np.floating)) \
            or not np.isfinite(min_area) or min_area < 0:
        raise InvalidInputError(f"min_area must be a finite number >= 0, got {min_area!r:.80}")
    return float(min_area)


def mask_polygons(mask: np.ndarray, min_area: float = 0.0) -> list[list[float]]:
    """Outer contours of an (H, W) binary mask as flat ``[x1, y1, x2, y2, ...]`` pixel-centre coordinates.

    Contours with fewer than 3 points, or enclosing less than ``min_area`` square pixels, are dropped.
    """
    if isinstance(mask, RunLengthMask):
        mask = mask.decode()
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise InvalidInputError(f"mask must be an (H, W) array, got {getattr(mask, 'shape', type(mask).__name__)}")
    if mask.dtype != bool and not np.issubdtype(mask.dtype, np.number):
        raise InvalidInputError(f"mask must be boolean or numeric, got dtype {mask.dtype}")
    min_area = _check_min_area(min_area)
    if mask.size == 0:
        return []
    return _polygons(mask != 0, min_area)


def to_polygon_annotations(selection: Selection | Any, min_area: float = 0.0) -> list[dict]:
    """Per mask: id (1-based), instance_id, prompt, score, area (pixels), bbox [x, y, w, h] and polygons
    (see :func:`mask_polygons`)."""
    selection = as_selection(selection)
    min_area = _check_min_area(min_area)
    annotations = []
    for k, (mask, instance_id, prompt, score) in enumerate(
            zip(selection.masks, selection.instance_ids, selection.prompts, selection.scores)):
        x1, y1, x2, y2 = mask.bbox()
        polygons = _polygons(mask.decode_region(x1, y1, x2, y2), min_area, (x1, y1)) if x2 > x1 else []
        annotations.append({
            "id": k + 1,
            "instance_id": _instance_id(instance_id),
            "prompt": str(prompt),
            "score": float(score),
            "area": int(mask.area),
            "bbox": _xywh(x1, y1, x2, y2),
            "polygons": polygons,
        })
    return annotations


def write_polygons_json(selection: Selection | Any, path: PathLike, min_area: float = 0.0) -> Path:
    """Write ``{'height', 'width', 'annotations': to_polygon_annotations(...)}`` as JSON (atomically)."""
    target = check_file_path(path)
    selection = as_selection(selection)
    h, w = selection.image_size
    document = {"height": int(h), "width": int(w), "annotations": to_polygon_annotations(selection, min_area)}
    return _write_json(target, document)
