"""Timing helpers the benchmarks share: the attainable matmul GFLOP/s, a network's FLOP count, and the CPU time
the hypervisor stole from this guest (/proc/stat)."""

from __future__ import annotations

import os
import time
from pathlib import Path

MATMUL_SIZE = 2048


def steal_seconds() -> float | None:
    """CPU seconds (all CPUs) the hypervisor has given to other guests since boot, from /proc/stat; None where
    there is no such count. On a shared VM this is time the benchmark wanted and did not get."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def steal_share(steal_start: float | None, wall_start: float) -> float | None:
    """The share of all CPUs' time stolen since (``steal_start`` from :func:`steal_seconds`, ``wall_start`` from
    ``time.perf_counter()``); None where /proc/stat has no steal count."""
    steal_end = steal_seconds()
    if steal_start is None or steal_end is None:
        return None
    return (steal_end - steal_start) / ((time.perf_counter() - wall_start) * (os.cpu_count() or 1))


def best_matmul_seconds(a, b, repeat: int) -> float:
    """The fastest of ``repeat`` products a @ b, in seconds."""
    import torch

    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(size: int = MATMUL_SIZE, repeat: int = 10, dtype=None) -> float:
    """Attainable GFLOP/s: the best of ``repeat`` (size x size) @ (size x size) products in ``dtype``
    (default fp32; torch.bfloat16 runs on AMX / AVX512-BF16 where the CPU has them)."""
    import torch

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    return 2 * size**3 / best_matmul_seconds(a, b, repeat) / 1e9


def network_flops(model, input_size: tuple[int, int], thop_convention: bool = False) -> float:
    """Multiply-adds x 2 of every convolution for one (1, 3, H, W) input.

    ``thop_convention`` counts a transposed convolution as thop (which Ultralytics' published GFLOPs use: 42.4
    for FastSAM-s at 640) does, output pixels x input channels x kernel taps, i.e. 4x the real multiply-adds of
    the prototype branch's 2x2 stride-2 upsampling: 6% more than the exact count for the s size."""
    import torch
    from torch import nn

    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.ConvTranspose2d):
            c_in = inputs[0].shape[1]
            kh, kw = module.kernel_size
            pixels = output.shape[2] * output.shape[3] if thop_convention else inputs[0].shape[2] * inputs[0].shape[3]
            total += 2 * c_in * module.out_channels // module.groups * kh * kw * pixels
        else:
            c_out, c_in_g, kh, kw = module.weight.shape
            total += 2 * c_out * c_in_g * kh * kw * output.shape[2] * output.shape[3]

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.inference_mode():
        model(torch.zeros(1, 3, *input_size))
    for hook in hooks:
        hook.remove()
    return float(total)
