"""``fastsam track SOURCE``: every instance of a video or stream tracked with persistent ids, and the objects that
points, boxes or texts select on one frame followed; COCO-RLE JSONL per frame and an overlay video."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fastsam.cli_options import add_inference_arguments, chosen_model, predictor_options
from fastsam.errors import InvalidInputError


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``track`` subcommand to ``subparsers`` (from ``parser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "track", help="track every instance of a video, folder of frames, camera or stream (persistent ids)",
        description="Segment every frame of SOURCE, give each instance a persistent id (ByteTrack-style association "
                    "on box and mask IoU with a Kalman motion model) and follow the objects the prompts select on "
                    "--prompt-frame. Writes OUT/tracks.jsonl (one COCO-RLE line per frame, as it goes) and, with "
                    "--overlay, OUT/overlay.mp4. After a crash or Ctrl-C, the same command with --resume continues.")
    p.add_argument("source", help="video file, folder or glob of frames, camera index (0) or stream URL (rtsp://...)")
    p.add_argument("--points", nargs="+", metavar="X,Y", help="point prompts in frame pixels")
    p.add_argument("--labels", nargs="+", type=int, metavar="L", help="1 foreground / 0 background, one per point")
    p.add_argument("--per-point", action="store_true", help="one object part per foreground point, not the merged "
                                                             "mask of FastSAM's point rule")
    p.add_argument("--boxes", nargs="+", metavar="X1,Y1,X2,Y2", help="box prompts in frame pixels")
    p.add_argument("--text", action="append", dest="texts", metavar="TEXT",
                   help="text prompt scored with CLIP on the frame's instances (repeatable; needs the text extra)")
    p.add_argument("--text-model", help="CLIP folder or model id (default $FASTSAM_CLIP or "
                                        "openai/clip-vit-base-patch32)")
    p.add_argument("--prompt-frame", type=int, default=0, metavar="K", help="frame the prompts apply to (0-based)")
    add_inference_arguments(p)
    p.add_argument("--low-conf", type=float, default=None, metavar="C",
                   help="also keep detections down to C (below --conf): they extend tracks but start none "
                        "(ByteTrack's second pass; costs their masks)")
    p.add_argument("--out", default="out/track", help="output folder")
    p.add_argument("--overlay", action="store_true", help="also write OUT/overlay.mp4: tracks in their colours, ids")
    p.add_argument("--resume", action="store_true", help="continue the run OUT holds (same source and settings)")
    p.add_argument("--checkpoint-every", type=int, default=50, metavar="N",
                   help="save the tracker state every N frames (a resumed run redoes at most N frames)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(handler=run)
    return p


def _prompts(args: argparse.Namespace) -> list[dict]:
    from fastsam.cli import _numbers

    if args.labels is not None and args.points is None:
        raise InvalidInputError("--labels given without --points")
    prompt: dict = {}
    if args.points:
        prompt["points"] = [_numbers(p, 2, "point") for p in args.points]
        prompt["labels"] = args.labels
        prompt["per_point"] = args.per_point
    if args.boxes:
        prompt["boxes"] = [_numbers(b, 4, "box") for b in args.boxes]
    if args.texts:
        prompt.update(texts=args.texts, text_model=args.text_model)
    elif args.text_model:
        raise InvalidInputError("--text-model given without --text")
    if not prompt:
        if args.prompt_frame != 0:
            raise InvalidInputError("--prompt-frame given without --points, --boxes or --text")
        return []
    return [{"frame": args.prompt_frame, **prompt}]


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``track`` command; FastSAMError propagates (the caller prints it and exits 2)."""
    from fastsam.video.run import track_video
    from fastsam.video.sources import FrameSource

    prompts = _prompts(args)
    if not args.quiet:
        print(FrameSource(args.source).describe(), file=sys.stderr)
    chosen_model(args, quiet=args.quiet)
    summary = track_video(args.source, args.out, args.model, prompts=prompts, device=args.device,
                          low_conf=args.low_conf, overlay=args.overlay, resume=args.resume,
                          checkpoint_every=args.checkpoint_every, progress=not args.quiet, **predictor_options(args))
    if not args.quiet:
        print(f"{summary.dest}: {summary.frames} frames, {summary.tracks} track ids; this run did "
              f"{summary.processed} frames at {summary.frames_per_s:.2f} frames/s", file=sys.stderr)
    return 0
