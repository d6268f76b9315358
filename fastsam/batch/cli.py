"""``fastsam batch SRC DST``: the command line of :func:`fastsam.batch.run_batch`.

``register(subparsers)`` adds the subcommand to fastsam's parser; ``run(args)`` executes it. ``main(argv)``
(``python -m fastsam.batch``) is the same command on its own.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from fastsam.cli_options import add_inference_arguments, chosen_model, predictor_options

EXIT_USER_ERROR = 2


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC",
                        help="folder of images (recursive), glob pattern (quote it; ** recurses), or list file "
                             "(one path per line, relative to the list's folder)")
    parser.add_argument("dest", metavar="DST", help="output folder: shard-*.jsonl, errors-*.jsonl, manifest.json; "
                                                    "rerunning the same command resumes an interrupted job")
    parser.add_argument("--prompts", metavar="JSONL",
                        help='per-image prompts, one JSON object per line: {"file": KEY, "points": [[x, y], ...], '
                             '"labels": [1, ...], "boxes": [[x1, y1, x2, y2], ...], "per_point": false}')
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help='local processes, or a Ray cluster (Ray Data; pip install "fastsam-torch[ray]")')
    parser.add_argument("--workers", type=int, default=None,
                        help="model replicas: local processes (default: one per core up to 8 on a CPU, 1 on a "
                             "GPU; 1 runs in this process) or Ray actors (default: the cluster's CPUs / --threads, "
                             "or its GPUs)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (local default: cores / workers; Ray default 1, reserved "
                             "as the actor's CPUs)")
    parser.add_argument("--shard-size", type=int, default=64, help="inputs per output shard (default 64)")
    add_inference_arguments(parser, precision=False)
    parser.add_argument("--lookahead", type=int, default=2,
                        help="images decoded ahead of (and encoded behind) the network per worker; 0: no overlap")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray instance)")
    parser.add_argument("--gpus-per-worker", type=float, default=None,
                        help="Ray: GPUs reserved per actor (default 1 with a cuda device, else 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``batch`` subcommand to ``subparsers`` (from ``parser.add_subparsers()``)."""
    parser = subparsers.add_parser(
        "batch", help="segment a folder, glob or file list into sharded COCO-RLE JSONL (resumable)",
        description="Segment every image of SRC into sharded COCO-RLE JSONL in DST. Each shard is written "
                    "atomically; after a crash or Ctrl-C, the same command resumes. Unreadable images are recorded "
                    "in errors-*.jsonl and do not stop the run.")
    _add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``batch`` command; FastSAMError propagates (the caller prints it and exits 2)."""
    from fastsam.batch.api import run_batch

    chosen_model(args, quiet=args.quiet)  # before predictor_options, which reads the resolved name
    summary = run_batch(
        args.source, args.dest, args.model, prompts=args.prompts, engine=args.engine, workers=args.workers,
        threads=args.threads, shard_size=args.shard_size, device=args.device, lookahead=args.lookahead,
        **predictor_options(args),
        ray_address=args.ray_address, gpus_per_worker=args.gpus_per_worker, progress=not args.quiet,
    )
    if not args.quiet:
        rate = f", {summary.images_per_s:.2f} images/s" if summary.processed else " (nothing left to do)"
        print(f"{summary.dest}: {summary.inputs} images in {summary.shards} shards: {summary.records} records, "
              f"{summary.errors} errors; this run computed {summary.processed}{rate}", file=sys.stderr)
        if summary.errors:
            print(f"fastsam: {summary.errors} image(s) could not be processed; reasons in "
                  f"{summary.dest}/errors-*.jsonl", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastsam.batch SRC DST ...``: the batch command alone, with fastsam's error handling."""
    from fastsam.errors import FastSAMError

    parser = argparse.ArgumentParser(prog="fastsam batch", description="Segment an image collection into sharded "
                                     "COCO-RLE JSONL (resumable).")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except FastSAMError as exc:
        print(f"fastsam: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("fastsam: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
