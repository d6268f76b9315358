"""fastsam benchmark suite: everything mode end to end (file in, COCO RLE JSON on disk) per stage, prompt
latency on a cached result, peak RSS, and the network's achieved GFLOP/s against this machine's attainable fp32
matmul GFLOP/s.

    python benchmarks/run.py                      # s, x and n84 models, fp32 and bf16, both images
    python benchmarks/run.py --models s --precisions fp32 --images sa_8776.jpg --repeat 5
    python benchmarks/run.py --checkpoint s-trained=runs/s20/weights/last.safetensors   # plus a model of our own

Each (model, precision, image) runs in its own process so that its peak RSS is its own; the matmul is timed
before each pass of the network, in that process (this VM's speed drifts within minutes). Prints a markdown table
and writes JSON (default out/benchmarks.json). Needs ../shared/fixtures (or $FASTSAM_SHARED).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report import write_json  # noqa: E402

from timing import (MATMUL_SIZE, best_matmul_seconds, matmul_gflops, network_flops,  # noqa: E402
                    steal_seconds, steal_share)

SHARED = Path(os.environ.get("FASTSAM_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
STAGES = ("decode", "letterbox", "network", "nms", "masks", "encode")
MODELS = {
    "s": "FastSAM-s architecture (fixture fastsam-s-parity.pt, random weights: noisy masks, the worst case)",
    "x": "FastSAM-x architecture (YOLOv8x-seg, reg_max 26, random weights, seed 0)",
    "n84": "trained YOLOv8n-seg (fixture yolov8n-seg-coco128-ultralytics84.pt, conf 0.01): smooth, real-looking masks",
}
# Confidence per model: the trained 80-class checkpoint needs a low one to find instances on these images.
CONF = {"s": 0.4, "x": 0.4, "n84": 0.01}
# Checkpoints given with --checkpoint NAME=PATH (weakly trained models of our own) score low: default confidence.
CHECKPOINT_CONF = 0.001


MATMULS_PER_PASS = 3  # the best of these, timed just before each pass, is that pass's attainable GFLOP/s


def share_of_matmul(flops: float, network_seconds: list[float], matmul_seconds: list[float]) -> float:
    """Median over passes of the network's GFLOP/s over that of the matmul timed just before the pass."""
    return statistics.median(flops / seconds / (2 * MATMUL_SIZE**3 / matmul)
                             for seconds, matmul in zip(network_seconds, matmul_seconds))


def layout_baseline(ours, plain, input_size: tuple[int, int], repeat: int, flops: float, matmul_operands) -> dict:
    """Our fp32 network (channels-last) against the same fused network run as Ultralytics runs it on a CPU
    (NCHW, eager, fused Conv+BN, inference mode), forward passes alternating, each after its own matmul timing
    (``matmul_operands``: the two matrices). Returns both medians in seconds and both shares of the matmul."""
    import torch

    image = torch.rand(1, 3, *input_size)
    times: dict[str, list[float]] = {"ours": [], "nchw": []}
    matmuls: dict[str, list[float]] = {"ours": [], "nchw": []}
    with torch.inference_mode():
        ours(image), plain(image)
        for _ in range(repeat):
            for name, net in (("ours", ours), ("nchw", plain)):
                matmuls[name].append(best_matmul_seconds(*matmul_operands, MATMULS_PER_PASS))
                start = time.perf_counter()
                net(image)
                times[name].append(time.perf_counter() - start)
    return {"ours_seconds": statistics.median(times["ours"]), "nchw_seconds": statistics.median(times["nchw"]),
            "share_ours": share_of_matmul(flops, times["ours"], matmuls["ours"]),
            "share_nchw": share_of_matmul(flops, times["nchw"], matmuls["nchw"])}


def _load(model_key: str, checkpoints: dict[str, str]):
    import torch

    from fastsam.model import load_weights
    from fastsam.model.config import YoloV8SegConfig
    from fastsam.model.yolov8_seg import YoloV8Seg

    if model_key in checkpoints:
        return load_weights(checkpoints[model_key])
    if model_key == "s":
        return load_weights(FIXTURES / "fastsam-s-parity.pt")
    if model_key == "n84":
        return load_weights(FIXTURES / "yolov8n-seg-coco128-ultralytics84.pt")
    torch.manual_seed(0)
    return YoloV8Seg(YoloV8SegConfig.from_scale("x", reg_max=26)).eval()


def measure(model_key: str, image_name: str, repeat: int, imgsz: int, precision: str = "fp32",
            checkpoints: dict[str, str] | None = None, checkpoint_conf: float = CHECKPOINT_CONF) -> dict:
    """One configuration, in this process: stage medians, prompt latencies, FLOPs and peak RSS. Matmuls are timed
    right before each pass, so that the network's share of the attainable GFLOP/s compares adjacent moments
    (this VM's speed drifts by up to 1.5x within minutes)."""
    import numpy as np
    import torch

    from fastsam.inference.letterbox import plan_letterbox
    from fastsam.inference.predictor import Predictor
    from fastsam.io.export import write_coco_json

    checkpoints = checkpoints or {}
    conf = checkpoint_conf if model_key in checkpoints else CONF[model_key]
    image = FIXTURES / "images" / image_name
    model = _load(model_key, checkpoints)
    predictor = Predictor(model, imgsz=imgsz, conf=conf, precision=precision)
    matmul_a, matmul_b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    runs, matmul_seconds = [], []
    steal_start, wall_start = steal_seconds(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeat + 1):  # the first run warms up (kernel compilation, allocator)
            matmul_seconds.append(best_matmul_seconds(matmul_a, matmul_b, MATMULS_PER_PASS))
            start = time.perf_counter()
            result = predictor(image, keep_image=False)
            encode_start = time.perf_counter()
            write_coco_json(result.everything(), Path(tmp) / "out.json", file_name=image.name)
            stages = dict(result.timings, encode=time.perf_counter() - encode_start)
            stages["total"] = time.perf_counter() - start
            if k:
                runs.append(stages)
    seconds = {k: statistics.median(r[k] for r in runs) for k in (*STAGES, "total")}
    # Share of the CPUs' time stolen by other guests while the passes ran (None without /proc/stat).
    steal = steal_share(steal_start, wall_start)

    h, w = result.image_size
    rng = np.random.default_rng(0)
    points = np.stack((rng.integers(0, w, 100), rng.integers(0, h, 100)), 1)
    corners = np.sort(np.stack((rng.integers(0, w, (100, 2)), rng.integers(0, h, (100, 2))), 1), axis=2)
    point_ms, box_ms = [], []
    for p in points:
        start = time.perf_counter()
        result.prompt(points=[p])
        point_ms.append((time.perf_counter() - start) * 1000)
    for (x1, x2), (y1, y2) in corners:
        start = time.perf_counter()
        result.prompt(boxes=[[x1, y1, x2 + 1, y2 + 1]])
        box_ms.append((time.perf_counter() - start) * 1000)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the reference models below
    agreement = None
    if precision != "fp32":  # masks against the fp32 network's, matched one-to-one
        from fastsam.eval.matching import matched_mask_ious

        reference = Predictor(_load(model_key, checkpoints), imgsz=imgsz, conf=conf)(image, keep_image=False)
        ious = matched_mask_ious([m.to_coco() for m in result.rles], [m.to_coco() for m in reference.rles])
        agreement = {"mean_matched_iou": float(ious.mean()) if ious.size else 1.0,
                     "instances_fp32": len(reference)}
    input_size = plan_letterbox((h, w), imgsz).input_size
    fused = _load(model_key, checkpoints).eval().fuse()
    flops = network_flops(fused, input_size)
    flops_thop = network_flops(fused, input_size, thop_convention=True)
    baseline = (layout_baseline(predictor.model, fused, input_size, repeat, flops, (matmul_a, matmul_b))
                if precision == "fp32" else None)
    matmul_flop = 2 * MATMUL_SIZE**3
    share = share_of_matmul(flops, [r["network"] for r in runs], matmul_seconds[1:])  # warm-up excluded
    return {
        "model": model_key, "precision": precision, "agreement": agreement, "image": image_name, "image_size": [h, w], "input_size": list(input_size),
        "instances": len(result), "seconds": seconds,
        "post_over_network": (seconds["nms"] + seconds["masks"] + seconds["encode"]) / seconds["network"],
        "prompt_ms": {"point_median": statistics.median(point_ms), "box_median": statistics.median(box_ms)},
        "network_gflop": flops / 1e9, "network_gflops": flops / 1e9 / seconds["network"],
        "matmul_gflops": statistics.median(matmul_flop / m for m in matmul_seconds[1:]) / 1e9,
        "network_share_of_matmul": share,
        # The same share with the FLOP count behind Ultralytics' published GFLOPs (thop's; see network_flops).
        "network_gflop_thop": flops_thop / 1e9,
        "network_share_of_matmul_thop": share * flops_thop / flops,
        "layout_baseline": baseline,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "peak_rss_mb": peak_rss_mb,
        "steal": steal,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        help=f"of {', '.join(MODELS)} and the names given with --checkpoint")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="also measure this checkpoint as model NAME, e.g. a FastSAM-s architecture trained with "
                             "`fastsam train --scale s`")
    parser.add_argument("--checkpoint-conf", type=float, default=CHECKPOINT_CONF,
                        help="confidence threshold for --checkpoint models (weakly trained ones score low)")
    parser.add_argument("--images", nargs="+", default=["dogs.jpg", "sa_8776.jpg"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=1024)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--json", type=Path, default=REPO / "out" / "benchmarks.json")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "IMAGE", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    checkpoints = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--checkpoint takes NAME=PATH, got {item!r}")
        if name in MODELS:
            parser.error(f"--checkpoint name {name!r} is taken by a built-in model")
        if not Path(path).is_file():
            parser.error(f"--checkpoint {name}: no file {path}")
        checkpoints[name] = str(Path(path).resolve())
    unknown = [m for m in args.models if m not in MODELS and m not in checkpoints]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: use {', '.join(MODELS)} or a --checkpoint NAME")
    if args.one:  # child process: one configuration, JSON on stdout
        print(json.dumps(measure(args.one[0], args.one[1], args.repeat, args.imgsz, args.one[2], checkpoints,
                                 args.checkpoint_conf)))
        return
    if not (FIXTURES / "fastsam-s-parity.pt").is_file():
        sys.exit(f"benchmarks need the fixtures in {FIXTURES} (set FASTSAM_SHARED)")

    import torch

    attainable = matmul_gflops()
    rows = []
    models = list(dict.fromkeys([*args.models, *(name for name in checkpoints if name not in args.models)]))
    for model_key in models:
        for precision in args.precisions:
            for image_name in args.images:
                done = subprocess.run([sys.executable, __file__, "--one", model_key, image_name, precision,
                                       "--repeat", str(args.repeat), "--imgsz", str(args.imgsz),
                                       *(f"--checkpoint={name}={path}" for name, path in checkpoints.items()),
                                       "--checkpoint-conf", str(args.checkpoint_conf)],
                                      capture_output=True, text=True)
                if done.returncode:
                    sys.exit(done.stderr)
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; attainable fp32 matmul {attainable:.0f} GFLOP/s (best of 10 at the start; "
          f"each row's share is against the {MATMUL_SIZE}^3 matmul timed before each of its passes)\n")
    print("| model | precision | image | instances | " + " | ".join(STAGES) + " | total | post / network | point "
          "| box | network GFLOP/s (% of matmul GFLOP/s) [% with Ultralytics' FLOP count] | mask IoU vs fp32 "
          "| peak RSS | steal |")
    print("|" + "---|" * (len(STAGES) + 12))
    for r in rows:
        s = r["seconds"]
        cells = " | ".join(f"{s[k] * 1000:.0f} ms" for k in STAGES)
        iou = f"{r['agreement']['mean_matched_iou']:.3f}" if r["agreement"] else "-"
        print(f"| {r['model']} | {r['precision']} | {r['image']} | {r['instances']} | {cells} | {s['total']:.2f} s | "
              f"{r['post_over_network'] * 100:.0f}% | {r['prompt_ms']['point_median']:.2f} ms | "
              f"{r['prompt_ms']['box_median']:.2f} ms | {r['network_gflops']:.0f} "
              f"({r['network_share_of_matmul'] * 100:.0f}% of {r['matmul_gflops']:.0f}) "
              f"[{r['network_share_of_matmul_thop'] * 100:.0f}%] | {iou} | "
              f"{r['peak_rss_mb']:.0f} MB | {'-' if r['steal'] is None else format(r['steal'], '.0%')} |")
    baselines = [r for r in rows if r.get("layout_baseline")]
    if baselines:
        print("\nfp32 network, ours (channels-last) against the same fused network in NCHW as Ultralytics runs it, "
              "forward passes alternating (median):\n")
        print("| model | image | ours | NCHW | speed-up | ours, % of matmul | NCHW, % of matmul |")
        print("|---|---|---|---|---|---|---|")
        for r in baselines:
            b = r["layout_baseline"]
            print(f"| {r['model']} | {r['image']} | {b['ours_seconds'] * 1000:.0f} ms | {b['nchw_seconds'] * 1000:.0f} ms "
                  f"| {b['nchw_seconds'] / b['ours_seconds']:.2f}x | {b['share_ours'] * 100:.0f}% "
                  f"| {b['share_nchw'] * 100:.0f}% |")
    report = {"attainable_gflops": attainable, "torch": torch.__version__, "cores": os.cpu_count(),
              "models": {k: MODELS.get(k, f"checkpoint {checkpoints.get(k)}, conf {args.checkpoint_conf}")
                         for k in models}, "repeat": args.repeat, "imgsz": args.imgsz, "rows": rows}
    write_json(args.json, report)


if __name__ == "__main__":
    main()
