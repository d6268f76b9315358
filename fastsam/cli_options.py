"""Command-line options shared by the commands that run the network (segment, batch, serve)."""

from __future__ import annotations

import argparse
import sys

from fastsam.inference.precision import PRECISIONS


def add_inference_arguments(parser: argparse.ArgumentParser, precision: bool = True) -> None:
    """--model, --imgsz, --conf, --iou, --max-det, --no-retina, --device (and --precision) with FastSAM's defaults."""
    parser.add_argument("--model", default="auto",
                        help="zoo name (FastSAM-s, FastSAM-x), fastsam-default (the small bundled model) or a "
                             "checkpoint path; auto (default): FastSAM-x or -s when downloaded, else fastsam-default")
    parser.add_argument("--imgsz", type=int, default=1024, help="network input long side (multiple of 32)")
    parser.add_argument("--conf", type=float, default=None,
                        help="confidence threshold (default 0.4, FastSAM's; 0.15 for fastsam-default, whose scores "
                             "run lower)")
    parser.add_argument("--iou", type=float, default=None,
                        help="NMS IoU threshold (default 0.9, FastSAM's; 0.7 for fastsam-default, which leaves more "
                             "near-duplicates)")
    parser.add_argument("--max-det", type=int, default=300, help="maximum instances per image")
    parser.add_argument("--no-retina", action="store_true", help="masks at network-input resolution (faster)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    if precision:
        parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                            help="network precision: bf16 is faster on CPUs with AVX512-BF16/AMX, masks differ "
                                 "slightly from fp32")


def predictor_options(args: argparse.Namespace) -> dict:
    """Predictor keyword arguments from the parsed options of :func:`add_inference_arguments`."""
    from fastsam.model.zoo import model_thresholds

    conf, iou = model_thresholds(str(args.model), args.conf, args.iou)
    options = {"imgsz": args.imgsz, "conf": conf, "iou": iou, "max_det": args.max_det,
               "retina": not args.no_retina}
    if hasattr(args, "precision"):
        options["precision"] = args.precision
    return options


def chosen_model(args: argparse.Namespace, quiet: bool = False) -> str:
    """``args.model`` with ``auto`` resolved (see fastsam.model.zoo.auto_model), also stored back into
    ``args.model``; says on stderr when that falls back to the bundled model, far weaker than the official
    weights."""
    from fastsam.model.zoo import BUNDLED_NAME, auto_model, is_auto

    name = str(args.model)
    if not is_auto(name):
        return name
    name = args.model = auto_model()
    if name == BUNDLED_NAME and not quiet:
        print("fastsam: no FastSAM weights downloaded; using the small bundled model fastsam-default (see "
              "fastsam/weights/README.md). For FastSAM's quality pass --model FastSAM-x (downloads 145 MB).",
              file=sys.stderr)
    return name
