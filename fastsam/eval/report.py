"""The paper-style report: measured benchmark results (the ``<task>.json`` files the tasks write) beside the
numbers published for FastSAM and SAM, as one markdown file.

Published numbers are from the FastSAM paper (Zhao et al. 2023, arXiv 2306.12156), as its authors reproduce
them in the README of github.com/CASIA-IVA-Lab/FastSAM (commit 0038669d): edges on BSDS500 test, proposals on
COCO val2017 (5k images) and LVIS v1, instance segmentation on COCO val2017 with ViTDet-H boxes. The paper has
no click (NoC) table, so the clicks section shows measured numbers only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from fastsam.errors import InvalidInputError
from fastsam.eval.store import markdown_table
from fastsam.io.export import atomic_write_bytes

PAPER_SOURCE = ("FastSAM paper, arXiv 2306.12156 (tables as reproduced in the README of "
                "github.com/CASIA-IVA-Lab/FastSAM, commit 0038669d)")

#: BSDS500 edge detection: ODS, OIS, AP, R50.
PAPER_EDGES = {"HED": (0.788, 0.808, 0.840, 0.923), "SAM": (0.768, 0.786, 0.794, 0.928),
               "FastSAM": (0.750, 0.790, 0.793, 0.903)}
#: COCO object proposals, box AR in percent: AR@10, AR@100, AR@1000, AUC.
PAPER_PROPOSALS_COCO = {"SAM-H E64": (15.5, 45.6, 67.7, 32.1), "SAM-H E32": (18.5, 49.5, 62.5, 33.7),
                        "SAM-B E32": (11.4, 39.6, 59.1, 27.3), "FastSAM": (15.7, 47.3, 63.7, 32.2)}
#: LVIS v1 object proposals, box AR@1000 in percent: all, small, medium, large.
PAPER_PROPOSALS_LVIS = {"ViTDet-H (supervised)": (65.0, 53.2, 83.3, 91.2), "SAM-H E64": (52.1, 36.6, 75.1, 88.2),
                        "SAM-H E32": (50.3, 33.1, 76.2, 89.8), "SAM-B E32": (45.0, 29.3, 68.7, 80.6),
                        "FastSAM": (57.1, 44.3, 77.1, 85.3)}
#: COCO instance segmentation from ViTDet-H boxes, mask AP: AP, AP_small, AP_medium, AP_large.
PAPER_BOXES = {"ViTDet-H (its own masks)": (0.510, 0.320, 0.543, 0.689), "SAM": (0.465, 0.308, 0.510, 0.617),
               "FastSAM": (0.379, 0.239, 0.434, 0.500)}


def load_results(paths: Iterable[str | Path]) -> list[dict]:
    """Every benchmark summary found: each path is a ``.json`` file or a folder whose ``*.json`` files (and
    those of its direct subfolders) are read. Files that are not task summaries are skipped."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            # Per-image caches (cache-<task>/) are skipped: many files, none a summary.
            found += sorted(path.glob("*.json")) + sorted(
                p for p in path.glob("*/*.json") if not p.parent.name.startswith("cache"))
        else:
            raise InvalidInputError(f"no such file or folder: {path}")
    results = []
    for file in found:
        try:
            document = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(document, dict):
            continue
        task = document.get("task") or (file.stem if file.stem in ("edges", "proposals", "boxes", "clicks") else None)
        if task is None or (task == "edges" and _find(document, "ODS") is None):
            continue
        results.append(dict(document, task=task, _file=str(file)))
    return results


def _find(document: Any, key: str) -> Any:
    """The first value stored under ``key`` anywhere in nested dicts (breadth first)."""
    queue = [document]
    while queue:
        node = queue.pop(0)
        if isinstance(node, dict):
            if key in node:
                return node[key]
            queue.extend(v for v in node.values() if isinstance(v, dict))
    return None


def _score(value: Any) -> float | None:
    """A metric as a float: edge summaries may store ODS / OIS as {"F": ...}."""
    if isinstance(value, dict):
        value = value.get("F")
    return float(value) if isinstance(value, (int, float)) else None


def _label(result: dict) -> str:
    method = result.get("method") or _find(result, "method")
    name = Path(str(result.get("model") or _find(result, "model") or "?")).name
    images = result.get("images")
    if images is None and isinstance(result.get("per_image"), (list, dict)):
        images = len(result["per_image"])  # the edge task keeps one entry per image
    what = f"{method}" if method and method != "fastsam" else f"fastsam {name}"
    return f"measured: {what}, {images if images is not None else '?'} images"


def _percent(value: float | None) -> float | None:
    return None if value is None or value < 0 else 100.0 * value


def _edges_section(results: list[dict]) -> str:
    rows: list[list[Any]] = [[f"paper: {name}", *values] for name, values in PAPER_EDGES.items()]
    rows += [[_label(r), *(_score(_find(r, k)) for k in ("ODS", "OIS", "AP", "R50"))] for r in results]
    return "## Edge detection (BSDS500)\n\n" + markdown_table(["", "ODS", "OIS", "AP", "R50"], rows)


def _proposals_section(results: list[dict]) -> str:
    rows: list[list[Any]] = [[f"paper: {name} (COCO val2017)", *values]
                             for name, values in PAPER_PROPOSALS_COCO.items()]
    for r in results:
        for kind in ("box", "mask"):
            rows.append([f"{_label(r)}, {kind}", *(_percent(r[kind].get(f"AR@{k}")) for k in (10, 100, 1000)), None])
    text = "## Object proposals (AR in percent)\n\n" + markdown_table(
        ["", "AR10", "AR100", "AR1000", "AUC"], rows, digits=1)
    rows = [[f"paper: {name} (LVIS v1)", *values] for name, values in PAPER_PROPOSALS_LVIS.items()]
    rows += [[_label(r) + ", box", *(_percent(r["box"].get(key)) for key in
                                      ("AR@1000", "AR_small@1000", "AR_medium@1000", "AR_large@1000"))]
             for r in results]
    return text + "\nBox AR@1000 by object size (the paper's sizes are on LVIS; ours on the set measured):\n\n" + \
        markdown_table(["", "all", "small", "medium", "large"], rows, digits=1)


def _boxes_section(results: list[dict]) -> str:
    rows: list[list[Any]] = [[f"paper: {name}, ViTDet-H boxes", *values, None] for name, values in PAPER_BOXES.items()]
    for r in results:
        boxes = r.get("settings", {}).get("boxes", "?")
        source = "ground-truth boxes" if boxes == "ground truth" else f"boxes from {Path(str(boxes)).name}"
        rows.append([f"{_label(r)}, {source}",
                     *(r["mask"].get(k) for k in ("AP", "AP_small", "AP_medium", "AP_large")), r.get("mean_iou")])
    return "## Box-prompted instance segmentation (COCO mask AP)\n\n" + markdown_table(
        ["", "AP", "APS", "APM", "APL", "mIoU"], rows)


def _clicks_section(results: list[dict]) -> str:
    rows = []
    for r in results:
        miou = r.get("miou", [])
        rows.append([_label(r), r.get("NoC@85"), r.get("NoC@90"), r.get("failures@90"),
                     *(miou[k - 1] if len(miou) >= k else None for k in (1, 5, 20))])
    return ("## Interactive segmentation (simulated clicks, FastSAM merge rule)\n\nThe paper reports no click "
            "benchmark.\n\n" + markdown_table(["", "NoC@85", "NoC@90", "failures@90", "mIoU@1", "mIoU@5", "mIoU@20"],
                                              rows))


SECTIONS = {"edges": _edges_section, "proposals": _proposals_section, "boxes": _boxes_section,
            "clicks": _clicks_section}


def render_report(results: list[dict]) -> str:
    """The markdown report of the given summaries (sections only for tasks that were measured)."""
    if not results:
        raise InvalidInputError("no benchmark results (edges/proposals/boxes/clicks .json) to report")
    parts = ["# FastSAM zero-shot benchmarks\n",
             f"Published numbers: {PAPER_SOURCE}; they are on the full benchmark sets. Measured rows may use a "
             "development subset and other settings (see each run's JSON), so compare them with care.\n"]
    for task, section in SECTIONS.items():
        picked = [r for r in results if r["task"] == task]
        if picked:
            parts.append(section(picked))
    parts.append("Runs: " + ", ".join(f"`{r['_file']}`" for r in results) + "\n")
    return "\n".join(parts)


def write_report(paths: Iterable[str | Path], out: str | Path) -> Path:
    """Read the summaries under ``paths`` and write the report to ``out`` (atomically)."""
    return atomic_write_bytes(out, render_report(load_results(paths)).encode("utf-8"))
