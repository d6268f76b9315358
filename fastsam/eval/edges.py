"""``bench edges``: zero-shot edge detection on BSDS500 (ODS, OIS, AP, R50) for FastSAM or Canny.

Each image's edge map is made in this process (the network runs here) and scored against its annotators by the
benchmark protocol (:mod:`fastsam.eval.bsds`), in ``workers`` processes. Each image's counts are written to
``out_dir/edges_parts/<image>.json`` as soon as they exist, so an interrupted run, started again with the same
settings, only computes the images that are missing. The summary goes to ``out_dir/edges.json`` and
``out_dir/edges.md``.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from fastsam.errors import InvalidInputError
from fastsam.eval.bsds import (DEFAULT_MAX_DIST, BoundaryCounts, evaluate_boundaries, image_best,
                               load_ground_truth, summarize, threshold_grid)
from fastsam.io.export import atomic_write_bytes

EDGE_METHODS = ("fastsam", "canny")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PARTS_FOLDER = "edges_parts"


def bsds_images(data_root: str | Path, split: str = "val") -> list[tuple[str, Path, Path]]:
    """(image id, image path, ground-truth .mat path) of a BSDS500 split, sorted by id.

    ``data_root`` holds ``images/<split>`` and ``groundTruth/<split>`` (directly or under ``data/``, the layout of
    the official BSR archive)."""
    root = Path(data_root)
    candidates = [root, root / "data", root / "BSDS500" / "data"]
    base = next((c for c in candidates if (c / "images" / split).is_dir() and (c / "groundTruth" / split).is_dir()),
                None)
    if base is None:
        raise InvalidInputError(f"{str(root)!r} is not a BSDS500 folder: expected images/{split} and "
                                f"groundTruth/{split} in it (or in its data/)")
    pairs = []
    for image in sorted((base / "images" / split).iterdir()):
        truth = base / "groundTruth" / split / f"{image.stem}.mat"
        if image.suffix.lower() in IMAGE_SUFFIXES and truth.is_file():
            pairs.append((image.stem, image, truth))
    if not pairs:
        raise InvalidInputError(f"no image with a ground-truth .mat file in {base / 'images' / split}")
    return pairs


def _check_arguments(method: str, model: str | Path | None, max_images: int | None, workers: int) -> None:
    if method not in EDGE_METHODS:
        raise InvalidInputError(f"unknown edge method {method!r}; choose one of {', '.join(EDGE_METHODS)}")
    if method == "fastsam" and model is None:
        raise InvalidInputError("the fastsam edge method needs a model (checkpoint path or zoo name)")
    for name, value, allow_none in (("max_images", max_images, True), ("workers", workers, False)):
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")


def _edge_source(method: str, model: str | Path | None, imgsz: int, conf: float, iou: float, thresholds: int,
                 progress: bool) -> tuple[Callable[[Path], tuple[np.ndarray, dict]], dict]:
    """A function image path -> (edge map, facts about it), and the edge-map settings to record."""
    from fastsam.eval.edge_maps import DEFAULT_CANNY_SIGMA, DEFAULT_MASK_SIGMA, canny_edge_map, fastsam_edge_map
    from fastsam.io.image import load_image

    if method == "canny":
        def canny(path: Path) -> tuple[np.ndarray, dict]:
            return canny_edge_map(load_image(path), levels=thresholds), {}

        # One Canny run per benchmark threshold, so each threshold of the sweep is one Canny setting.
        return canny, {"sigma": DEFAULT_CANNY_SIGMA, "levels": f"{thresholds} high thresholds geometric 2..400, "
                                                               "low = 0.4 high, L2 gradient"}

    from fastsam.inference.predictor import Predictor, check_settings
    from fastsam.model.zoo import load_model

    check_settings(imgsz, conf, iou, 300)
    predictor = Predictor(load_model(model, progress=progress), imgsz=imgsz, conf=conf, iou=iou,
                          keep_prototypes=True)

    def fastsam(path: Path) -> tuple[np.ndarray, dict]:
        result = predictor(path, keep_image=False)
        return fastsam_edge_map(result), {"instances": len(result)}

    return fastsam, {"model": str(model), "imgsz": imgsz, "conf": conf, "iou": iou, "mask_sigma": DEFAULT_MASK_SIGMA}


def _score_image(image_id: str, edge_map: np.ndarray, truth_path: Path, thresholds: int, max_dist: float,
                 facts: dict) -> dict:
    """One image's part: its counts per threshold and facts (runs in a worker process)."""
    start = time.perf_counter()
    truths = load_ground_truth(truth_path)
    if truths[0].shape != edge_map.shape:
        raise InvalidInputError(f"{image_id}: edge map {edge_map.shape} and ground truth {truths[0].shape} differ "
                                "in size")
    counts = evaluate_boundaries(edge_map, truths, thresholds=thresholds, max_dist=max_dist)
    return {"image": image_id, "counts": counts.to_json(), "annotators": len(truths),
            "score_seconds": time.perf_counter() - start, **facts}


def _prepare_parts(parts: Path, settings: dict) -> None:
    """Create the parts folder for ``settings``; refuse one left by a run with other settings."""
    record = parts / "settings.json"
    if record.is_file():
        previous = json.loads(record.read_text())
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise InvalidInputError(f"{parts} holds a run with other settings ({', '.join(changed)}); use another "
                                    "output folder or delete that one")
        return
    atomic_write_bytes(record, json.dumps(settings, indent=1).encode())


def _markdown(document: dict) -> str:
    m, d = document["metrics"], document["dataset"]
    lines = [
        f"# Edge detection on BSDS500 {d['split']} ({d['images']} images)", "",
        "| method | ODS | OIS | AP | R50 | ODS threshold | ODS P / R |",
        "|---|---|---|---|---|---|---|",
        f"| {document['method']} | {m['ODS']['F']:.3f} | {m['OIS']['F']:.3f} | {m['AP']:.3f} | {m['R50']:.3f} "
        f"| {m['ODS']['threshold']:.3f} | {m['ODS']['precision']:.3f} / {m['ODS']['recall']:.3f} |", "",
        f"Protocol: {document['settings']['thresholds']} thresholds, thinned maps, matching tolerance "
        f"{document['settings']['max_dist']} of the image diagonal, every annotator. "
        f"Edge maps: {json.dumps(document['settings']['edge_map'])}.", "",
    ]
    return "\n".join(lines)


def run_edges_benchmark(method: str, data_root: str | Path, out_dir: str | Path, *, split: str = "val",
                        model: str | Path | None = None, imgsz: int = 1024, conf: float = 0.4, iou: float = 0.9,
                        max_images: int | None = None, thresholds: int = 99, workers: int = 1,
                        progress: bool = True) -> dict:
    """Run the BSDS500 boundary benchmark for ``method`` ("fastsam" with ``model``, or "canny").

    Writes ``out_dir/edges.json`` (ODS / OIS / AP / R50, PR curve, per-image best F, settings) and
    ``out_dir/edges.md``; per-image counts in ``out_dir/edges_parts`` make an interrupted run resumable.
    ``max_images`` takes the first images by id; ``workers`` processes score images. Returns the JSON document.
    """
    _check_arguments(method, model, max_images, workers)
    threshold_grid(thresholds)
    items = bsds_images(data_root, split)[:max_images]
    out = Path(out_dir)
    parts = out / PARTS_FOLDER
    source, edge_settings = _edge_source(method, model, imgsz, conf, iou, thresholds, progress)
    settings = {"method": method, "split": split, "thresholds": int(thresholds), "max_dist": DEFAULT_MAX_DIST,
                "thin": True, "edge_map": edge_settings}
    _prepare_parts(parts, settings)

    def part_path(image_id: str) -> Path:
        return parts / f"{image_id}.json"

    todo = [item for item in items if not part_path(item[0]).is_file()]
    start = time.perf_counter()
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=f"edges {method}", unit="image",
               disable=not progress)

    def save(part: dict) -> None:
        atomic_write_bytes(part_path(part["image"]), json.dumps(part).encode())
        bar.update(1)

    try:
        if workers == 1:
            for image_id, image_path, truth_path in todo:
                edge_map, facts = source(image_path)
                save(_score_image(image_id, edge_map, truth_path, thresholds, DEFAULT_MAX_DIST, facts))
        else:
            # Workers only run numpy / numba code, so forking after torch is loaded is safe, and cheaper than
            # spawning fresh interpreters that import everything again.
            context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                pending: deque[Future] = deque()
                try:
                    for image_id, image_path, truth_path in todo:
                        edge_map, facts = source(image_path)
                        pending.append(pool.submit(_score_image, image_id, edge_map, truth_path, thresholds,
                                                   DEFAULT_MAX_DIST, facts))
                        while len(pending) > 2 * workers or (pending and pending[0].done()):
                            save(pending.popleft().result())
                    while pending:
                        save(pending.popleft().result())
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        bar.close()
    elapsed = time.perf_counter() - start

    records = [json.loads(part_path(image_id).read_text()) for image_id, _, _ in items]
    counts = [BoundaryCounts.from_json(r["counts"]) for r in records]
    summary = summarize(counts)
    per_image = []
    for record, count in zip(records, counts):
        extra = {k: v for k, v in record.items() if k not in ("counts", "image")}
        per_image.append({"image": record["image"], **image_best(count), **extra})
    document = {
        "task": "edges",
        "method": method,
        "dataset": {"name": "BSDS500", "root": str(Path(data_root)), "split": split, "images": len(items)},
        "settings": settings,
        "metrics": {key: summary[key] for key in ("ODS", "OIS", "AP", "R50")},
        "curve": summary["curve"],
        "per_image": per_image,
        "timing": {"images_computed": len(todo), "wall_seconds": elapsed},
    }
    atomic_write_bytes(out / "edges.json", json.dumps(document, indent=1).encode())
    atomic_write_bytes(out / "edges.md", _markdown(document).encode())
    return document
