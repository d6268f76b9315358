"""Video tracking benchmark: frames/s end to end (decode, network, association, RLE JSONL out) and peak RSS over a
long run, through ``fastsam.video.track_video`` as ``fastsam track`` runs it.

    python benchmarks/video.py                                   # bundled + FastSAM-s, imgsz 640, 1,000-frame RSS run
    python benchmarks/video.py --models default --long-frames 0  # speed only

The test video is made here from ../shared/fixtures/images/dogs.jpg, panned and zoomed (1280 x 720, mp4v).
Each measurement runs in its own process so that its memory is its own. The speed rows time ``--frames``
frames after ``--warmup``; the stages come from each frame's timings, the video decode from reading the video once
before; "tracking + out" is the rest: association, prompts, RLE to COCO strings and the JSONL line. The RSS
row samples the resident set size after every frame of a ``--long-frames`` run and reports it at a few points
and its slope. Prints a markdown table and writes JSON (default out/bench_video.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report import write_json  # noqa: E402

SHARED = Path(os.environ.get("FASTSAM_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
MODELS = {
    "default": ("fastsam-default", "bundled fastsam-default (YOLOv8n-seg), conf 0.15"),
    "s": (str(FIXTURES / "fastsam-s-parity.pt"), "FastSAM-s architecture (fixture fastsam-s-parity.pt), conf 0.4"),
}
STAGES = ("letterbox", "network", "nms", "masks")
SIZE = (1280, 720)


def make_video(path: Path, frames: int) -> Path:
    """``frames`` frames of dogs.jpg under a slow pan and zoom that repeats every 120 frames."""
    import cv2
    import numpy as np

    photo = cv2.imread(str(FIXTURES / "images" / "dogs.jpg"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, SIZE)
    for t in range(frames):
        a = abs((t % 120) / 60.0 - 1.0)  # 1 -> 0 -> 1: back and forth
        width = 1040.0 - 140.0 * a
        cx, cy = 536.0 + 40.0 * a, 301.0 + 8.0 * a
        s = SIZE[0] / width
        matrix = np.array([[s, 0.0, SIZE[0] / 2 - s * cx], [0.0, s, SIZE[1] / 2 - s * cy]])
        writer.write(cv2.warpAffine(photo, matrix, SIZE, flags=cv2.INTER_LINEAR))
    writer.release()
    return path


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(args: argparse.Namespace) -> None:
    """One measurement in this process; prints its JSON row on stdout."""
    import resource

    import torch

    from fastsam.video import track_video

    torch.set_num_threads(args.threads)
    model = MODELS[args.model][0]
    rows: list[dict] = []
    marks: list[float] = []

    def on_frame(frame) -> None:
        marks.append(time.perf_counter())
        rows.append({**{k: frame.result.timings.get(k, 0.0) for k in STAGES}, "rss": rss_mb(),
                     "instances": len(frame.result), "tracked": len(frame.tracked())})

    from fastsam.video import FrameSource

    start = time.perf_counter()
    decoded = sum(1 for _ in FrameSource(args.video).frames())
    video_decode_ms = 1000 * (time.perf_counter() - start) / decoded
    with tempfile.TemporaryDirectory(prefix="fastsam-bench-video-") as out:
        start = time.perf_counter()
        # Followed object: the black dog, so that the prompt path is in the loop too.
        summary = track_video(args.video, out, model, imgsz=args.imgsz, device="cpu",
                              prompts=[{"frame": 0, "boxes": [[640, 160, 1010, 720]]}], on_frame=on_frame)
        wall = time.perf_counter() - start
        lines = sum(1 for _ in open(Path(out) / "tracks.jsonl"))
    warm = rows[args.warmup:]
    seconds = marks[-1] - marks[args.warmup - 1] if len(marks) > args.warmup else wall
    per_frame = seconds / max(len(warm), 1)
    stages = {k: 1000 * sum(r[k] for r in warm) / max(len(warm), 1) for k in STAGES}
    rss = [r["rss"] for r in rows]
    report = {
        "model": args.model, "imgsz": args.imgsz, "threads": args.threads, "frames": summary.frames,
        "lines": lines, "timed_frames": len(warm), "frames_per_s": round(1 / per_frame, 3),
        "ms_per_frame": round(1000 * per_frame, 1), "stages_ms": {k: round(v, 1) for k, v in stages.items()},
        "video_decode_ms": round(video_decode_ms, 1),
        "tracking_and_out_ms": round(1000 * per_frame - sum(stages.values()) - video_decode_ms, 1),
        "instances_per_frame": round(sum(r["instances"] for r in warm) / max(len(warm), 1), 1),
        "tracked_per_frame": round(sum(r["tracked"] for r in warm) / max(len(warm), 1), 1),
        "track_ids": summary.tracks, "wall_s": round(wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if len(rss) >= 100:
        import numpy as np

        marks_at = sorted({10, len(rss) // 10, len(rss) // 2, len(rss) - 1})
        report["rss_mb_at_frame"] = {str(i + 1): round(rss[i], 1) for i in marks_at}
        tail = np.arange(len(rss) // 10, len(rss))
        report["rss_slope_mb_per_1000_frames"] = round(float(np.polyfit(tail, np.asarray(rss)[tail], 1)[0]) * 1000, 2)
        report["rss_max_after_first_tenth_mb"] = round(max(rss[len(rss) // 10:]), 1)
        report["rss_at_first_tenth_mb"] = round(rss[len(rss) // 10], 1)
    print(json.dumps(report))


def run_child(args: argparse.Namespace, model: str, video: Path, frames: int) -> dict:
    command = [sys.executable, __file__, "--child", "--model", model, "--video", str(video), "--imgsz",
               str(args.imgsz), "--threads", str(args.threads), "--warmup", str(args.warmup)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    load = os.getloadavg()[0]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["load_avg_1min_before"] = round(load, 2)
    row["video_frames"] = frames
    print(json.dumps(row), file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--frames", type=int, default=40, help="frames per speed row, after the warm-up")
    parser.add_argument("--warmup", type=int, default=5, help="first frames not timed (compilation, caches)")
    parser.add_argument("--long-frames", type=int, default=1000, help="length of the RSS run (0: none)")
    parser.add_argument("--long-model", default="default", choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--json", type=Path, default=Path("out/bench_video.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--video", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if not (FIXTURES / "images" / "dogs.jpg").is_file():
        sys.exit(f"needs {FIXTURES}/images/dogs.jpg (set FASTSAM_SHARED)")

    import torch

    with tempfile.TemporaryDirectory(prefix="fastsam-bench-video-") as tmp:
        short = make_video(Path(tmp) / "short.mp4", args.frames + args.warmup)
        speed = [run_child(args, model, short, args.frames + args.warmup) for model in args.models]
        long_row = None
        if args.long_frames:
            long_video = make_video(Path(tmp) / "long.mp4", args.long_frames)
            long_row = run_child(args, args.long_model, long_video, args.long_frames)
    report = {"imgsz": args.imgsz, "threads": args.threads, "frame_size": list(SIZE), "torch": torch.__version__,
              "cores": os.cpu_count(), "machine": platform.processor() or platform.machine(), "speed": speed,
              "long_run": long_row}
    print(f"fastsam track end to end, {SIZE[0]}x{SIZE[1]} mp4 video, imgsz {args.imgsz}, retina masks, "
          f"{args.threads} torch thread(s), one followed object; {args.frames} frames timed after {args.warmup}\n")
    print("| model | frames/s | ms/frame | video decode | letterbox | network | nms | masks | tracking + out | "
          "instances/frame | tracked/frame | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in speed:
        s = r["stages_ms"]
        print(f"| {MODELS[r['model']][1]} | {r['frames_per_s']:.2f} | {r['ms_per_frame']:.0f} | "
              f"{r['video_decode_ms']:.1f} | {s['letterbox']:.1f} | {s['network']:.0f} | {s['nms']:.1f} | "
              f"{s['masks']:.1f} | {r['tracking_and_out_ms']:.1f} | {r['instances_per_frame']} | "
              f"{r['tracked_per_frame']} | {r['load_avg_1min_before']:.1f} |")
    if long_row is not None:
        at = ", ".join(f"frame {k}: {v:.0f} MB" for k, v in long_row["rss_mb_at_frame"].items())
        print(f"\n{long_row['frames']}-frame run ({MODELS[long_row['model']][1]}): RSS {at}; slope over frames "
              f"{long_row['frames'] // 10}-{long_row['frames']}: {long_row['rss_slope_mb_per_1000_frames']:+.1f} MB "
              f"per 1,000 frames; peak {long_row['peak_rss_mb']:.0f} MB; {long_row['frames_per_s']:.2f} frames/s; "
              f"{long_row['track_ids']} track ids")
    write_json(args.json, report)


if __name__ == "__main__":
    main()
