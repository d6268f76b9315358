"""Does torch.compile speed up the network here? Eager (fused Conv+BN, channels-last, inference_mode) against
torch.compile (inductor) of the same module, per precision, at one input size; prints a markdown table and writes
JSON. Compilation time is reported separately (it is paid once per input shape). ``--freezing`` compiles with
inductor's freezing (weights folded in as constants and prepacked for oneDNN, its recommended CPU inference
setting). Eager and compiled passes alternate, so that both see the same moments of a machine whose speed drifts.

    python benchmarks/compile.py --model ../shared/fixtures/fastsam-s-parity.pt --size 704 1024 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import write_json  # noqa: E402
from fastsam.inference.precision import InferenceModel  # noqa: E402
from fastsam.model.zoo import load_model  # noqa: E402


def _alternating_median_ms(first, second, x: torch.Tensor, repeat: int) -> tuple[float, float]:
    """Median milliseconds of ``first(x)`` and of ``second(x)``, called in turn ``repeat`` times each."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, out in zip((first, second), times):
            start = time.perf_counter()
            fn(x)
            out.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--size", type=int, nargs=2, default=(704, 1024), metavar=("H", "W"))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--freezing", action="store_true", help="inductor's freezing (constant weights, prepacked)")
    parser.add_argument("--json", type=Path, default=Path("out/bench_compile.json"))
    args = parser.parse_args()
    if args.freezing:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
    x = torch.rand(1, 3, *args.size)
    rows = []
    for precision in args.precisions:
        fused = load_model(args.model, progress=False).eval().fuse()
        eager = InferenceModel(fused, precision)
        with torch.inference_mode():
            eager(x)
            # Inductor prepacks for oneDNN itself: it compiles the network of PyTorch operators.
            compiled = torch.compile(InferenceModel(fused, precision, onednn=False))  # C++/OpenMP kernels on the CPU
            start = time.perf_counter()
            compiled(x)
            compile_s = time.perf_counter() - start
            eager_ms, compiled_ms = _alternating_median_ms(eager, compiled, x, args.repeat)
        rows.append({"precision": precision, "eager_ms": eager_ms, "compiled_ms": compiled_ms,
                     "compile_s": compile_s, "speedup": eager_ms / compiled_ms})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input {args.size[0]}x{args.size[1]}"
          f"{', freezing' if args.freezing else ''}\n")
    print("| precision | eager | torch.compile | speed-up | first call (compiling) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['eager_ms']:.0f} ms | {r['compiled_ms']:.0f} ms | {r['speedup']:.2f}x | "
              f"{r['compile_s']:.0f} s |")
    write_json(args.json, {"torch": torch.__version__, "size": list(args.size), "freezing": args.freezing,
                           "rows": rows}, indent=1)


if __name__ == "__main__":
    main()
