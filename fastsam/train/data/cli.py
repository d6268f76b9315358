"""``fastsam convert-sa1b SRC... DST``: the command line of :func:`fastsam.train.data.sa1b_convert.convert_sa1b`."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(commands: Any) -> argparse.ArgumentParser:
    """Add the ``convert-sa1b`` subcommand to fastsam's subparsers; it sets ``handler``."""
    parser = commands.add_parser(
        "convert-sa1b", help="convert SA-1B (folders or tars) into YOLO-seg training folders (parallel, resumable)",
        description="Convert SA-1B images and their per-image JSON (COCO RLE masks) into DST/images and "
                    "DST/labels (YOLO-seg polygons, one class). Tars are streamed one at a time, never extracted. "
                    "Rerunning the same command resumes; bad images are listed in DST/errors.jsonl.")
    parser.add_argument("sources", metavar="SRC", nargs="+",
                        help="SA-1B folder (sa_N.jpg + sa_N.json), .tar file, or folder of .tar files")
    parser.add_argument("dest", metavar="DST", help="output folder (images/, labels/, manifest.json)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores; 1: this one)")
    parser.add_argument("--tolerance", type=float, default=1.0,
                        help="outline simplification in pixels (Douglas-Peucker; 0 keeps every vertex)")
    parser.add_argument("--min-area", type=float, default=4.0, help="drop mask parts under this many pixels")
    parser.add_argument("--no-resume", action="store_true", help="convert everything again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``convert-sa1b`` command; FastSAMError propagates (the caller prints it, exit 2)."""
    from fastsam.train.data.sa1b_convert import convert_sa1b

    summary = convert_sa1b(args.sources, args.dest, workers=args.workers, resume=not args.no_resume,
                           progress=not args.quiet, tolerance=args.tolerance, min_area=args.min_area)
    if not args.quiet:
        print(f"{summary.dest}: converted {summary.converted} images ({summary.instances} instances), "
              f"{summary.skipped} already done, {summary.errors} errors", file=sys.stderr)
        if summary.errors:
            print(f"fastsam: {summary.errors} image(s) could not be converted; reasons in "
                  f"{summary.dest}/errors.jsonl", file=sys.stderr)
    return 0
