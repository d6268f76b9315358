"""Copy a campaign run's newest epoch into the repository: the EMA weights as fp16 safetensors (half the size of
fp32; enough to go on training with `fastsam train --start-epoch`) and a JSON of the epoch reached and the whole
training history (rows already committed are kept when the run folder was started anew from them).

    python campaign/save_run.py RUN_FOLDER campaign/run5      # writes campaign/run5.safetensors, run5.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from fastsam.io.atomic import atomic_write_bytes
from fastsam.model.zoo import convert_checkpoint


def save_run(run: Path, stem: Path) -> dict:
    history = json.loads((run / "metrics.json").read_text())
    if not history:
        raise SystemExit(f"{run} has no finished epoch yet")
    record = stem.with_suffix(".json")
    first = history[0]["epoch"]
    earlier = json.loads(record.read_text())["history"] if record.is_file() else []
    history = [row for row in earlier if row["epoch"] < first] + history
    convert_checkpoint(run / "weights" / "last.safetensors", stem.with_suffix(".safetensors"), torch.float16)
    summary = {"epoch": history[-1]["epoch"], "history": history}
    atomic_write_bytes(record, (json.dumps(summary, indent=1) + "\n").encode())
    return summary


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    saved = save_run(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"saved epoch {saved['epoch']} ({len(saved['history'])} epochs of history) to {sys.argv[2]}.*")
