"""One stretch of the training campaign on a lent GPU machine, inside one call of the `device` tool (issue 17).

A session's device time is 15 minutes and one command at most 10, so this script plans to its own wall-clock
budget: it unpacks the data that ``campaign/gpu/pack.py`` packed, trains two probe epochs to time an epoch on
this machine, then runs the longest schedule that fits the time left (the campaign's second-cycle recipe of runs
9 and 10: AdamW, lr0 0.001, one warm-up epoch, the last fifth of the epochs without mosaic) from ``--origin``, and
leaves in ``--out`` what comes back: the EMA weights after the last finished epoch (``last.safetensors``, fp32),
the run's ``metrics.json`` and ``summary.json`` (machine, epoch time, plan, losses). The probe's two epochs start
from the same origin and are thrown away; the decoded-image cache they build is kept for the run.

Prepare here, then one device call (from the repository root):

    python campaign/gpu/pack.py                     # .gpu/: data (~38 MiB) and the pycocotools wheel
    run(command="PYTHONUNBUFFERED=1 python3 campaign/gpu/train.py --out $OUT", carry=[".gpu"], timeout_s=600)

Measure what comes back here (``benchmarks/model_quality.py --model gpu=PATH/last.safetensors:0.15``), and
continue it on this machine with ``fastsam train ... --model PATH/last.safetensors --start-epoch N`` if wanted.
A CPU check of the whole path: ``python campaign/gpu/train.py --device cpu --imgsz 128 --budget 300 --out OUT``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The campaign's four training sources (campaign/run.sh), relative to the unpacked data folder.
TRAINING_SOURCES = ("camvid:train", "coco128-seg", "tiny_coco/tiny_coco:train2017", "bsds500:train")


def ensure_pycocotools(pack: Path, work: Path) -> None:
    """Install the packed pycocotools wheel into ``work/site`` when this Python lacks it (the GPU image does)."""
    try:
        import pycocotools  # noqa: F401
        return
    except ImportError:
        pass
    wheels = sorted((pack / "wheels").glob("pycocotools-*.whl"))
    if not wheels:
        raise SystemExit(f"pycocotools is missing and {pack / 'wheels'} holds no wheel: run campaign/gpu/pack.py")
    site = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(site), *map(str, wheels)], check=True)
    sys.path.insert(0, str(site))


def unpack(pack: Path, work: Path) -> Path:
    """The packed training data, unpacked once into ``work/data``."""
    data, done = work / "data", work / "data.unpacked"
    if not done.exists():
        archive = pack / "data.tar.xz"
        if not archive.is_file():
            raise SystemExit(f"{archive} is missing: run campaign/gpu/pack.py here and carry .gpu")
        with tarfile.open(archive) as tar:
            tar.extractall(data, filter="data")
        done.touch()
    return data


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({os.cpu_count()} cores)"


def shared_memory_workers(workers: int) -> int:
    """``workers``, or 0 when /dev/shm cannot hold the batches that loader workers hand over (a container's 64 MB
    default would end the run with a bus error): one batch of 32 images at 1024 px is ~100 MB, masks aside."""
    shm = Path("/dev/shm")
    if workers == 0 or not shm.is_dir():
        return workers
    if shutil.disk_usage(shm).free < 8 * 2**30 and os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,size=50%", str(shm)], check=False)
    free = shutil.disk_usage(shm).free
    if free < 2 * 2**30:
        print(f"/dev/shm has {free / 2**30:.1f} GiB free: loading in the main process", flush=True)
        return 0
    return workers


def committed_origin() -> str:
    """The campaign's committed weights (``campaign/*.safetensors``): the tree keeps one, the newest line's, so
    that it and the pack fit the device tool's 64 MiB; older runs' weights stay in git history."""
    found = sorted((REPO / "campaign").glob("*.safetensors"))
    if len(found) != 1:
        raise SystemExit(f"give --origin: campaign/ holds {len(found)} weights files ({[p.name for p in found]})")
    return str(found[0])


def plan_epochs(seconds_left: float, epoch_s: float, max_epochs: int) -> int:
    """Epochs that fit ``seconds_left`` at ``epoch_s`` each with a 10% margin (at least one)."""
    return max(1, min(max_epochs, math.floor(seconds_left / (1.1 * epoch_s))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where the weights and summaries go ($OUT)")
    parser.add_argument("--budget", type=float, default=510.0,
                        help="seconds for the whole script, unpacking and copying included (default 510 of a "
                             "600 s call)")
    parser.add_argument("--origin", default=None,
                        help="weights to start from (default: the campaign's one committed weights file)")
    parser.add_argument("--pack", type=Path, default=REPO / ".gpu")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fastsam-gpu"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--imgsz", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr0", type=float, default=0.001)
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--hyp", nargs="*", default=[], metavar="KEY=VALUE", help="augmentation overrides")
    args = parser.parse_args()
    args.origin = args.origin or committed_origin()
    started = time.monotonic()

    def seconds_left() -> float:
        return args.budget - (time.monotonic() - started)

    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    ensure_pycocotools(args.pack, args.work)
    data = unpack(args.pack, args.work)
    sys.path.insert(0, str(REPO))
    import torch

    from fastsam.train.cli import _hyp
    from fastsam.train.trainer import TrainConfig, Trainer

    workers = shared_memory_workers(args.workers) if args.device.startswith("cuda") else args.workers
    torch.backends.cudnn.benchmark = True  # one input size throughout: let cuDNN pick its fastest kernels once
    machine = device_name(args.device)
    print(f"{machine}, torch {torch.__version__}, {workers} loader workers; unpacked in "
          f"{time.monotonic() - started:.0f} s", flush=True)
    config = TrainConfig(
        data=[str(data / spec) for spec in TRAINING_SOURCES], model=args.origin, reg_max=26, imgsz=args.imgsz,
        batch=args.batch, epochs=2, optimizer="AdamW", lr0=args.lr0, momentum=0.9, warmup_bias_lr=0.0,
        warmup_epochs=1.0, close_mosaic=0, hyp=_hyp(args.hyp), device=args.device, workers=workers, seed=0,
        val=False, plots=False, out=str(args.work / "probe"))
    probe = Trainer(config, progress=False)
    probe.fit()
    epoch_s = probe.history[-1]["time/train_s"]
    dataset = probe.dataset
    del probe
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    # Saving an epoch's weights and copying them out cost seconds; keep 20 for them.
    epochs = plan_epochs(seconds_left() - 20, epoch_s, args.max_epochs)
    close_mosaic = max(1, round(epochs / 5))
    print(f"probe: {epoch_s:.1f} s an epoch; planned {epochs} epochs ({close_mosaic} without mosaic), "
          f"{seconds_left():.0f} s left", flush=True)

    run_dir = args.work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    trainer = Trainer(replace(config, epochs=epochs, close_mosaic=close_mosaic, out=str(run_dir)),
                      dataset=dataset, progress=False)
    while trainer.start_epoch < epochs and seconds_left() > 1.2 * epoch_s + 10:
        row = trainer.fit(stop_after_epochs=1)[-1]
        print(f"epoch {row['epoch']}/{epochs}: loss {row['train/loss']:.3f}, {row['time/train_s']:.1f} s, "
              f"{seconds_left():.0f} s left", flush=True)
    finished = trainer.start_epoch
    if finished:
        shutil.copy2(run_dir / "weights" / "last.safetensors", args.out / "last.safetensors")
        shutil.copy2(run_dir / "metrics.json", args.out / "metrics.json")
    summary = {"device": machine, "torch": torch.__version__, "origin": args.origin,
               "imgsz": args.imgsz, "batch": args.batch, "lr0": args.lr0, "hyp": config.hyp,
               "probe_epoch_s": epoch_s, "epochs_planned": epochs, "close_mosaic": close_mosaic,
               "epochs_finished": finished, "seconds": round(time.monotonic() - started, 1),
               "loss": [round(row["train/loss"], 4) for row in trainer.history]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), flush=True)
    if not finished:
        raise SystemExit("no epoch finished inside the budget")


if __name__ == "__main__":
    main()
