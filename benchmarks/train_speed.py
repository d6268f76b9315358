"""Where a training step's time goes on this CPU, and how fast the trainer goes against the attainable matmul.

    python benchmarks/train_speed.py                                   # this checkout's trainer, 20 steps
    python benchmarks/train_speed.py --baseline-rev main --steps 200   # also the trainer of a git revision

Each variant runs in its own process: the trainer of this checkout, and with ``--baseline-rev REV`` the one of
``fastsam/`` at REV (extracted with ``git archive`` into a temporary folder: no worktree, no branch touched), same
data, seed and settings, so both see the same batches. A step's time is split into data (waiting for the
DataLoader: loading and augmentation not hidden behind compute), forward, loss (assigner and losses), optimiser
(unscale, clipping, step), EMA, and backward (the rest of the step: backward plus the loop's bookkeeping). The
step's GFLOP/s counts 3x the forward's convolution FLOPs (forward, and the backward's two products) per image and
is set against the bf16 and fp32 2048^3 matmul timed in the same process before and after the steps (the best
of both). The steal column is the share of the CPUs' time the hypervisor gave to other guests meanwhile. The
first ``--warmup`` steps are left out of the timings (oneDNN builds its kernels then), not of the losses.

Prints a markdown table plus the per-window losses of each variant and, with a baseline, the paired difference
of the per-step losses (same seed, same batches); writes JSON (default out/train_speed.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FASTSAM_SHARED", REPO.parent / "shared"))
STAGES = ("data", "forward", "loss", "backward", "optimizer", "ema")
DEFAULT_DATA = [str(SHARED / "data" / "coco128-seg"), f"{SHARED / 'data' / 'camvid'}:train"]


class _Clock:
    """Seconds per stage per step, accumulated by the wrappers below."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self.losses: list[float] = []
        self.current: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.current[stage] = self.current.get(stage, 0.0) + seconds


def _instrument(trainer, clock: _Clock, steps: int) -> None:
    """Wrap the trainer's loader, network, loss, optimiser step and EMA update with timers (the same attribute
    names exist in every trainer revision this benchmark compares), and stop after ``steps`` steps."""
    make_loader = trainer._loader
    network = trainer.train_model
    criterion = trainer.criterion
    optimizer_step = trainer._optimizer_step
    ema_update = trainer.ema.update

    class TimedLoader:
        def __init__(self, loader) -> None:
            self.loader = loader

        def __len__(self) -> int:
            return len(self.loader)

        def __iter__(self):
            iterator = iter(self.loader)
            while len(clock.steps) < steps:
                start = time.perf_counter()
                if clock.current:  # the previous step ends where this one starts waiting for data
                    clock.current["step"] = start - clock.current.pop("_start")
                    clock.steps.append(clock.current)
                    clock.current = {}
                    if len(clock.steps) >= steps:
                        return
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
                clock.current = {"_start": start, "data": time.perf_counter() - start}
                yield batch

    class TimedNetwork:
        def __call__(self, images):
            start = time.perf_counter()
            out = network(images)
            clock.add("forward", time.perf_counter() - start)
            return out

        def train(self, mode: bool = True):
            network.train(mode)
            return self

    def timed_criterion(out, batch):
        start = time.perf_counter()
        loss, items = criterion(out, batch)
        clock.add("loss", time.perf_counter() - start)
        clock.losses.append(float(items.sum()))
        return loss, items

    def timed_optimizer_step() -> None:
        start = time.perf_counter()
        before = clock.current.get("ema", 0.0)
        optimizer_step()
        clock.add("optimizer", time.perf_counter() - start - (clock.current.get("ema", 0.0) - before))

    def timed_ema_update(model) -> None:
        start = time.perf_counter()
        ema_update(model)
        clock.add("ema", time.perf_counter() - start)

    trainer._loader = lambda epoch: TimedLoader(make_loader(epoch))
    trainer.train_model = TimedNetwork()
    trainer.criterion = timed_criterion
    trainer._optimizer_step = timed_optimizer_step
    trainer.ema.update = timed_ema_update


def _matmuls() -> dict[str, float]:
    import torch

    from timing import matmul_gflops

    return {"bf16": matmul_gflops(dtype=torch.bfloat16, repeat=5), "fp32": matmul_gflops(repeat=5)}


def measure(args: argparse.Namespace) -> dict:
    """One variant, in this process (whose sys.path starts at the trainer's code)."""
    import copy

    import torch

    import fastsam
    from fastsam.train.trainer import Trainer, TrainConfig
    from timing import network_flops, steal_seconds, steal_share

    values = {"data": args.data, "imgsz": args.imgsz, "batch": args.batch, "scale": args.scale, "epochs": args.epochs,
              "seed": args.seed, "val": False, "plots": False, "out": tempfile.mkdtemp(prefix="train_speed_"),
              "workers": args.workers}
    for pair in args.set:
        key, _, value = pair.partition("=")
        values[key] = json.loads(value)
    config = TrainConfig.from_dict(values)
    trainer = Trainer(config, progress=False)
    flops = network_flops(copy.deepcopy(trainer.model).eval().float(), (args.imgsz, args.imgsz))
    matmul_before = _matmuls()
    clock = _Clock()
    _instrument(trainer, clock, args.steps)
    steal_start, wall_start = steal_seconds(), time.perf_counter()
    epoch = 0
    while len(clock.steps) < args.steps:
        trainer._train_epoch(epoch)
        epoch += 1
    steal = steal_share(steal_start, wall_start)
    matmul_after = _matmuls()
    timed = clock.steps[args.warmup:]
    step = statistics.mean(s["step"] for s in timed)
    stages = {name: statistics.mean(s.get(name, 0.0) for s in timed) for name in STAGES if name != "backward"}
    stages["backward"] = step - sum(stages.values())
    matmul = {k: max(matmul_before[k], matmul_after[k]) for k in matmul_before}
    step_gflops = 3 * flops * args.batch / step / 1e9
    return {
        "code": str(Path(fastsam.__file__).parents[1]), "settings": {k: v for k, v in values.items() if k != "out"},
        "amp_bf16": bool(getattr(trainer, "use_cpu_bf16", False)), "threads": torch.get_num_threads(),
        "steps": len(clock.steps), "timed_steps": len(timed), "step_s": step,
        "images_per_s": args.batch / step, "stage_s": {k: stages[k] for k in STAGES},
        "stage_share": {k: stages[k] / step for k in STAGES}, "forward_gflop_per_image": flops / 1e9,
        "step_gflops": step_gflops, "matmul_gflops": matmul,
        "share_of_matmul": {k: step_gflops / v for k, v in matmul.items()}, "steal": steal, "losses": clock.losses,
    }


def _extract(rev: str, into: Path) -> Path:
    """``fastsam/`` of git revision ``rev`` under ``into`` (read with git archive: the repository is untouched)."""
    archive = into / "code.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(REPO), "archive", rev, "fastsam"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "code", filter="data")
    return into / "code"


def _run_variant(code: Path, args: argparse.Namespace, extra: list[str]) -> dict:
    command = [sys.executable, __file__, "--child", str(code), "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--imgsz", str(args.imgsz), "--batch", str(args.batch), "--scale", args.scale,
               "--epochs", str(args.epochs), "--seed", str(args.seed), "--data", *args.data, *extra]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"variant {code} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _windows(losses: list[float], width: int) -> list[float]:
    return [statistics.mean(losses[i:i + width]) for i in range(0, len(losses), width)]


def paired_difference(new: list[float], old: list[float]) -> dict:
    """Mean of the per-step differences new - old and its standard error (same seed: the same batches)."""
    diffs = [a - b for a, b in zip(new, old)]
    mean = statistics.mean(diffs)
    stderr = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    return {"mean": mean, "stderr": stderr, "relative": mean / statistics.mean(old), "steps": len(diffs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=DEFAULT_DATA, help="training sources (PATH or PATH:SPLIT)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timings")
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--scale", default="n")
    parser.add_argument("--epochs", type=int, default=100, help="the run's nominal length (sets the LR schedule)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: the trainer's)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=JSON",
                        help="TrainConfig overrides for this checkout's variant, e.g. amp=false")
    parser.add_argument("--baseline-rev", help="also time the trainer of this git revision (e.g. main)")
    parser.add_argument("--window", type=int, default=50, help="steps per loss window in the table")
    parser.add_argument("--json", type=Path, default=REPO / "out" / "train_speed.json")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup >= args.steps:
        parser.error("--warmup must be less than --steps")
    if args.child:  # one variant: the trainer's code first on the path, the timing helpers beside this file
        sys.path[:0] = [str(args.child), str(Path(__file__).parent)]
        print(json.dumps(measure(args)))
        return
    missing = [spec for spec in args.data if not Path(spec.rsplit(":", 1)[0]).exists()]
    if missing:
        sys.exit(f"training data not found: {missing} (set FASTSAM_SHARED or give --data)")

    variants = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline_rev:
            variants[f"baseline ({args.baseline_rev})"] = _run_variant(_extract(args.baseline_rev, Path(tmp)), args, [])
        variants["this checkout"] = _run_variant(REPO, args, ["--set", *args.set] if args.set else [])

    any_row = next(iter(variants.values()))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {any_row['threads']} torch "
          f"threads; YOLOv8{args.scale}-seg, imgsz {args.imgsz}, batch {args.batch}, {args.steps} steps "
          f"({args.warmup} warm-up left out of the timings); data {' '.join(args.data)}\n")
    print("| variant | images/s | step s | " + " | ".join(STAGES) + " | step GFLOP/s | % of bf16 matmul | "
          "% of fp32 matmul | steal |")
    print("|---" * (9 + len(STAGES)) + "|")
    for name, row in variants.items():
        shares = " | ".join(f"{row['stage_s'][k]:.3f} s ({row['stage_share'][k]:.0%})" for k in STAGES)
        steal = "-" if row["steal"] is None else f"{row['steal']:.0%}"
        print(f"| {name} | {row['images_per_s']:.2f} | {row['step_s']:.2f} | {shares} | {row['step_gflops']:.0f} | "
              f"{row['share_of_matmul']['bf16']:.1%} of {row['matmul_gflops']['bf16']:.0f} | "
              f"{row['share_of_matmul']['fp32']:.1%} of {row['matmul_gflops']['fp32']:.0f} | {steal} |")
    print(f"\nmean training loss per {args.window} steps:")
    for name, row in variants.items():
        print(f"  {name}: " + ", ".join(f"{v:.3f}" for v in _windows(row["losses"], args.window)))
    summary: dict = {"variants": variants}
    if args.baseline_rev:
        old, new = variants[f"baseline ({args.baseline_rev})"], variants["this checkout"]
        summary["speedup"] = new["images_per_s"] / old["images_per_s"]
        summary["loss_difference"] = paired_difference(new["losses"], old["losses"])
        d = summary["loss_difference"]
        print(f"\nspeed-up {summary['speedup']:.2f}x; per-step loss, this checkout - baseline: {d['mean']:+.4f} "
              f"+/- {2 * d['stderr']:.4f} (2 standard errors, {d['steps']} paired steps; {d['relative']:+.2%})")
    from report import write_json  # beside this file, as the timing helpers

    write_json(args.json, summary, indent=1)


if __name__ == "__main__":
    main()
