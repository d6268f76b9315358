"""Where the torch bf16 network stands against the bf16 matmul: eager bf16 (PyTorch's operators, channels-last)
against the oneDNN form that `--precision bf16` runs (weights prepacked, SiLU fused into the convolutions), passes
alternating, the 2048^3 bf16 and fp32 matmuls timed just before each pass; then mask IoU against fp32 for trained
weights on one image. ``--profile`` prints the operator table of one pass of each.

    python benchmarks/bf16_network.py --model ../shared/fixtures/fastsam-s-parity.pt --size 704 1024 --repeat 5
    python benchmarks/bf16_network.py --iou ../shared/fixtures/yolov8n-seg-coco128-ultralytics84.pt:0.01
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.run import (  # noqa: E402
    MATMUL_SIZE, MATMULS_PER_PASS, best_matmul_seconds, network_flops, steal_seconds,
)
from fastsam.inference.precision import InferenceModel  # noqa: E402
from fastsam.model.zoo import load_model  # noqa: E402

MATMUL_FLOP = 2 * MATMUL_SIZE**3


def cpu_seconds() -> float:
    """CPU seconds this process (all its threads) has used: on a host whose other load takes cores away, a
    steadier measure of work than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_matmul_seconds(a: torch.Tensor, b: torch.Tensor, repeat: int) -> float:
    """The least process CPU seconds of ``repeat`` products a @ b."""
    best = float("inf")
    for _ in range(repeat):
        start = cpu_seconds()
        torch.mm(a, b)
        best = min(best, cpu_seconds() - start)
    return best


def alternate(nets: dict[str, InferenceModel], x: torch.Tensor, repeat: int,
              flops: float) -> dict[str, dict[str, float]]:
    """Per net: median pass seconds and median share of the bf16 matmul timed just before each pass."""
    operands = {dtype: tuple(torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=dtype) for _ in range(2))
                for dtype in (torch.float32, torch.bfloat16)}
    rows: dict[str, dict[str, list[float]]] = {name: {"net": [], "bf16": [], "fp32": [], "net_cpu": [], "bf16_cpu": []}
                                               for name in nets}
    with torch.inference_mode():
        for net in nets.values():
            net(x)
        for _ in range(repeat):
            for name, net in nets.items():
                for key, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                    rows[name][key].append(best_matmul_seconds(*operands[dtype], MATMULS_PER_PASS))
                rows[name]["bf16_cpu"].append(cpu_matmul_seconds(*operands[torch.bfloat16], MATMULS_PER_PASS))
                start, start_cpu = time.perf_counter(), cpu_seconds()
                net(x)
                rows[name]["net"].append(time.perf_counter() - start)
                rows[name]["net_cpu"].append(cpu_seconds() - start_cpu)
    return {name: {"seconds": statistics.median(r["net"]),
                   "share_bf16": statistics.median(flops / t / (MATMUL_FLOP / m) for t, m in zip(r["net"], r["bf16"])),
                   "cpu_seconds": statistics.median(r["net_cpu"]),
                   "cpu_share_bf16": statistics.median(flops / t / (MATMUL_FLOP / m)
                                                       for t, m in zip(r["net_cpu"], r["bf16_cpu"])),
                   "bf16_gflops": statistics.median(MATMUL_FLOP / m / 1e9 for m in r["bf16"]),
                   "fp32_gflops": statistics.median(MATMUL_FLOP / m / 1e9 for m in r["fp32"])}
            for name, r in rows.items()}


def mask_iou(checkpoint: str, conf: float, image: Path, imgsz: int) -> dict[str, float]:
    """Mean matched mask IoU of bf16 (oneDNN and eager) against fp32 on ``image``."""
    from fastsam.eval.matching import matched_mask_ious
    from fastsam.inference.predictor import Predictor

    reference = Predictor(load_model(checkpoint), imgsz=imgsz, conf=conf)(image, keep_image=False)
    out = {}
    for name, onednn in (("onednn", True), ("eager", False)):
        predictor = Predictor(load_model(checkpoint), imgsz=imgsz, conf=conf, precision="bf16")
        if not onednn:
            predictor.model = InferenceModel(load_model(checkpoint).eval().fuse(), "bf16", onednn=False)
        result = predictor(image, keep_image=False)
        ious = matched_mask_ious([m.to_coco() for m in result.rles], [m.to_coco() for m in reference.rles])
        out[name] = float(ious.mean()) if ious.size else 1.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO.parent / "shared" / "fixtures" / "fastsam-s-parity.pt"))
    parser.add_argument("--size", type=int, nargs=2, default=(704, 1024), metavar=("H", "W"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="1 makes the CPU-time columns exact on a busy host (no thread waits at barriers)")
    parser.add_argument("--iou", nargs="*", default=[], metavar="CHECKPOINT:CONF",
                        help="trained checkpoints to compare with fp32 (masks on --image); skips the timing")
    parser.add_argument("--image", type=Path, default=REPO.parent / "shared" / "fixtures" / "images" / "sa_8776.jpg")
    args = parser.parse_args()
    if args.iou:
        for item in args.iou:
            checkpoint, _, conf = item.rpartition(":")
            print(f"{checkpoint}: mask IoU vs fp32 {mask_iou(checkpoint, float(conf), args.image, 1024)}")
        return
    torch.set_num_threads(args.threads)
    fused = load_model(args.model).eval().fuse()
    nets = {"eager": InferenceModel(fused, "bf16", onednn=False), "onednn": InferenceModel(fused, "bf16")}
    x = torch.rand(1, 3, *args.size)
    steal_start, wall_start = steal_seconds(), time.perf_counter()
    rows = alternate(nets, x, args.repeat, network_flops(fused, tuple(args.size)))
    steal_end = steal_seconds()
    steal = (steal_end - steal_start) / ((time.perf_counter() - wall_start) * torch.get_num_threads()) \
        if steal_start is not None and steal_end is not None else float("nan")
    print(f"{args.model} at {args.size[0]}x{args.size[1]}, {torch.get_num_threads()} threads, steal {steal:.0%}")
    print("| path | network | share of bf16 matmul | network CPU | share of bf16 matmul, CPU time "
          "| bf16 matmul GFLOP/s | fp32 matmul GFLOP/s |\n|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['seconds'] * 1000:.0f} ms | {r['share_bf16'] * 100:.0f}% | {r['cpu_seconds'] * 1000:.0f} ms "
              f"| {r['cpu_share_bf16'] * 100:.0f}% | {r['bf16_gflops']:.0f} "
              f"| {r['fp32_gflops']:.0f} |")
    if args.profile:
        with torch.inference_mode():
            for name, net in nets.items():
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                    net(x)
                print(name, prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
