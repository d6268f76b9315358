"""``fastsam bench {edges,proposals,boxes,clicks,report}``: the zero-shot benchmarks from the command line.

Each task writes ``OUT/<task>.json`` and ``OUT/<task>.md`` and caches per-image results in ``OUT``, so the same
command resumes an interrupted run. ``report`` gathers results into one paper-style markdown file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

EDGE_METHODS_FALLBACK = ("fastsam", "canny")


def _add_common(parser: argparse.ArgumentParser, max_det: int, conf: float | None = None,
                model_required: bool = True) -> None:
    """The options every model task shares; ``conf`` None means the model's own default (0.4 for FastSAM's)."""
    parser.add_argument("--out", required=True, help="output folder (results, table, resumable per-image cache)")
    parser.add_argument("--model", required=model_required, help="zoo name (FastSAM-s, FastSAM-x) or checkpoint path")
    parser.add_argument("--imgsz", type=int, default=1024, help="network input long side (multiple of 32)")
    conf_default = f"default {conf}" if conf is not None else "default: the model's own, 0.4 for FastSAM's"
    parser.add_argument("--conf", type=float, default=conf, help=f"confidence threshold ({conf_default})")
    parser.add_argument("--iou", type=float, default=None,
                        help="NMS IoU threshold (default: the model's own, 0.9 for FastSAM's)")
    parser.add_argument("--max-det", type=int, default=max_det, help=f"instances per image (default {max_det})")
    parser.add_argument("--no-retina", action="store_true", help="masks at network-input resolution (faster)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or table")


def _add_coco_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("annotations", metavar="ANNOTATIONS", help="COCO instances JSON (e.g. instances_val2017.json)")
    parser.add_argument("--images", help="image folder (default: ../<split> beside the annotations folder)")


def _finish(args: argparse.Namespace, task: str) -> int:
    if not args.quiet:
        print((Path(args.out) / f"{task}.md").read_text(), end="")
        print(f"wrote {Path(args.out) / f'{task}.json'}", file=sys.stderr)
    return 0


def _thresholds(args: argparse.Namespace) -> tuple[float, float]:
    """``(conf, iou)``: the ones given, else the model's own (the bundled model's differ from FastSAM's), so that
    ``fastsam bench`` measures a model as ``fastsam segment`` runs it."""
    from fastsam.model.zoo import model_thresholds

    return model_thresholds(str(args.model) if args.model is not None else "", args.conf, args.iou)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    conf, iou = _thresholds(args)
    return {"imgsz": args.imgsz, "conf": conf, "iou": iou, "max_det": args.max_det,
            "retina": not args.no_retina, "device": args.device, "max_images": args.max_images,
            "progress": not args.quiet}


def _edges(args: argparse.Namespace) -> int:
    from fastsam.eval.edges import run_edges_benchmark

    model = args.model if args.method == "fastsam" else None
    if args.method == "fastsam" and model is None:
        from fastsam.errors import InvalidInputError

        raise InvalidInputError("--method fastsam needs --model (a zoo name or checkpoint path)")
    conf, iou = _thresholds(args)
    run_edges_benchmark(args.method, args.data_root, args.out, split=args.split, model=model, imgsz=args.imgsz,
                        conf=conf, iou=iou, max_images=args.max_images, thresholds=args.thresholds,
                        workers=args.workers, progress=not args.quiet)
    return _finish(args, "edges")


def _proposals(args: argparse.Namespace) -> int:
    from fastsam.eval.proposals import run_proposals_benchmark

    settings = _settings(args)
    run_proposals_benchmark(args.annotations, args.out, model=args.model, images=args.images, **settings)
    return _finish(args, "proposals")


def _boxes(args: argparse.Namespace) -> int:
    from fastsam.eval.boxes import run_boxes_benchmark

    run_boxes_benchmark(args.annotations, args.out, model=args.model, images=args.images,
                        detections=args.detections, min_score=args.min_score, **_settings(args))
    return _finish(args, "boxes")


def _clicks(args: argparse.Namespace) -> int:
    from fastsam.eval.clicks import run_clicks_benchmark

    run_clicks_benchmark(args.data_root, args.out, model=args.model, max_clicks=args.max_clicks, **_settings(args))
    return _finish(args, "clicks")


def _report(args: argparse.Namespace) -> int:
    from fastsam.eval.report import write_report

    path = write_report(args.results, args.out)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _edge_methods() -> tuple[str, ...]:
    try:
        from fastsam.eval.edges import EDGE_METHODS
    except ImportError:  # the edges task may not be installed yet; the names are the contract's
        return EDGE_METHODS_FALLBACK
    return tuple(EDGE_METHODS)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``fastsam bench ...`` to fastsam's parser; each task sets ``handler``."""
    bench = commands.add_parser("bench", help="zero-shot benchmarks: edges, proposals, boxes, clicks, report",
                                description="Zero-shot benchmarks as in the FastSAM paper. Each task writes "
                                            "OUT/<task>.json and OUT/<task>.md; rerunning resumes.")
    tasks = bench.add_subparsers(dest="bench_task", required=True)

    def task(name: str, help_text: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        parser = tasks.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(handler=handler)
        return parser

    edges = task("edges", "edge detection on BSDS500 (ODS, OIS, AP, R50)", _edges)
    edges.add_argument("data_root", metavar="DATA_ROOT", help="BSDS500 folder")
    edges.add_argument("--method", choices=_edge_methods(), default="fastsam", help="edge source (default fastsam)")
    edges.add_argument("--split", default="val", help="BSDS500 split (default val)")
    edges.add_argument("--thresholds", type=int, default=99, help="edge-strength thresholds (default 99)")
    edges.add_argument("--workers", type=int, default=1, help="processes for boundary matching")
    _add_common(edges, max_det=300, model_required=False)

    proposals = task("proposals", "class-agnostic object proposals on a COCO-format set: AR@10/100/1000 (box, "
                                  "mask; small/medium/large); defaults conf 0.001, max-det 1000", _proposals)
    _add_coco_set(proposals)
    _add_common(proposals, max_det=1000, conf=0.001)

    boxes = task("boxes", "box-prompted instance segmentation: COCO mask AP and mean IoU, from ground-truth boxes "
                          "or a detections JSON", _boxes)
    _add_coco_set(boxes)
    boxes.add_argument("--detections", help="COCO results JSON whose boxes (and scores, categories) are the prompts "
                                            "(default: the ground-truth boxes)")
    boxes.add_argument("--min-score", type=float, default=0.0, help="ignore detections scoring below this")
    _add_common(boxes, max_det=300)

    clicks = task("clicks", "interactive segmentation with simulated clicks on GrabCut, Berkeley, DAVIS, COCO_MVal "
                            "or SBD (as RITM / f-BRS package them): mIoU after 1..N clicks, NoC@85/90", _clicks)
    clicks.add_argument("data_root", metavar="DATA_ROOT", help="folder with data_GT/ + boundary_GT/ (GrabCut), "
                                                                "images/ + masks/ (Berkeley) or img/ + gt/ or masks/")
    clicks.add_argument("--max-clicks", type=int, default=20, help="clicks per image (default 20)")
    _add_common(clicks, max_det=300)

    report = task("report", "paper-style markdown: measured results beside the published numbers", _report)
    report.add_argument("results", nargs="+", metavar="RESULTS", help="result folders or <task>.json files")
    report.add_argument("--out", default="report.md", help="markdown file to write (default report.md)")
