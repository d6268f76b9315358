"""Command-line options shared by the commands that run the network (segment, batch, serve)."""

from __future__ import annotations

import argparse

from fastsam.inference.precision import PRECISIONS


def add_inference_arguments(parser: argparse.ArgumentParser, precision: bool = True) -> None:
    """--model, --imgsz, --conf, --iou, --max-det, --no-retina, --device (and --precision) with FastSAM's defaults."""
    parser.add_argument("--model", default="FastSAM-x", help="zoo name (FastSAM-s, FastSAM-x) or checkpoint path")
    parser.add_argument("--imgsz", type=int, default=1024, help="network input long side (multiple of 32)")
    parser.add_argument("--conf", type=float, default=0.4, help="confidence threshold")
    parser.add_argument("--iou", type=float, default=0.9, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=300, help="maximum instances per image")
    parser.add_argument("--no-retina", action="store_true", help="masks at network-input resolution (faster)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    if precision:
        parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                            help="network precision: bf16 is faster on CPUs with AVX512-BF16/AMX, masks differ "
                                 "slightly from fp32")


def predictor_options(args: argparse.Namespace) -> dict:
    """Predictor keyword arguments from the parsed options of :func:`add_inference_arguments`."""
    options = {"imgsz": args.imgsz, "conf": args.conf, "iou": args.iou, "max_det": args.max_det,
               "retina": not args.no_retina}
    if hasattr(args, "precision"):
        options["precision"] = args.precision
    return options
