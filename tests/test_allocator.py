"""keep_freed_memory: freed blocks are reused without page faults; the opt-out leaves malloc alone."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Allocate and free blocks of 3-25 MiB, as a forward pass does, and count the page faults of each round.
_ROUNDS = """
import json, resource, sys
import numpy as np
from fastsam.inference.allocator import keep_freed_memory
applied = keep_freed_memory()
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.ones(mib << 18, dtype=np.float32) for mib in (3, 10, 20, 7, 15, 25, 12)]
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _rounds(opt_out: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FASTSAM_KEEP_FREED_MEMORY", None)
    if opt_out:
        env["FASTSAM_KEEP_FREED_MEMORY"] = "0"
    done = subprocess.run([sys.executable, "-c", _ROUNDS], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_blocks_are_reused_without_faults() -> None:
    kept, default = _rounds(opt_out=False), _rounds(opt_out=True)
    assert kept["applied"] and not default["applied"]
    steady_default = sum(default["faults"][2:])
    if steady_default == 0:
        pytest.skip("this glibc keeps these blocks by itself")
    # After the first round every block comes back from the process's own free memory.
    assert sum(kept["faults"][2:]) * 10 < steady_default, (kept, default)


def test_predictor_applies_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from fastsam.inference import predictor as predictor_module
    from fastsam.model.config import YoloV8SegConfig
    from fastsam.model.yolov8_seg import YoloV8Seg

    calls = []
    monkeypatch.setattr(predictor_module, "keep_freed_memory", lambda: calls.append(1) or True)
    torch.manual_seed(0)
    predictor_module.Predictor(YoloV8Seg(YoloV8SegConfig.from_scale("n")), imgsz=64)
    assert calls == [1]
