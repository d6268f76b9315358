"""Checkpoint fuzzing: mutated zip members and pickles of a small YOLOv8-seg checkpoint in the ultralytics
layout. Every outcome must be a loaded model or a CheckpointError, each within a time bound, and the whole run
within a memory bound (in a child process whose address space is capped, so a failure cannot take pytest down).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastsam.model import YoloV8Seg
from tests.test_checkpoint import SMALL_CONFIG, _as_ultralytics

REPO = Path(__file__).resolve().parents[1]
MUTATIONS = 150
SECONDS_PER_LOAD = 5.0
RSS_GROWTH_BYTES = 512 << 20

_CHILD = r"""
import io, json, random, resource, sys, time, zipfile, zlib
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from fastsam.errors import CheckpointError
from fastsam.model.checkpoint import load_weights

source, folder, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with zipfile.ZipFile(source) as archive:
    members = {name: archive.read(name) for name in archive.namelist()}
pickle_name = next(name for name in members if name.endswith("data.pkl"))
tensor_names = sorted(name for name in members if "/data/" in name)
rng = random.Random(21)


def flip(data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def splice(data):
    start, stop = sorted(rng.randrange(len(data)) for _ in range(2))
    at = rng.randrange(len(data))
    return data[:at] + data[start:stop] + data[at:]


def mutate():
    mutated, compress = dict(members), {}
    kind = rng.choice(["pickle-flip", "pickle-flip", "pickle-cut", "pickle-splice", "tensor-size", "drop",
                       "bomb", "zip-bytes"])
    if kind == "pickle-flip":
        mutated[pickle_name] = flip(mutated[pickle_name])
    elif kind == "pickle-cut":
        mutated[pickle_name] = mutated[pickle_name][:rng.randrange(len(mutated[pickle_name]))]
    elif kind == "pickle-splice":
        mutated[pickle_name] = splice(mutated[pickle_name])
    elif kind == "tensor-size":
        name = rng.choice(tensor_names)
        data = mutated[name]
        mutated[name] = data[:rng.randrange(len(data))] if rng.random() < 0.5 else data + bytes(rng.randint(1, 64))
    elif kind == "drop":
        del mutated[rng.choice(sorted(mutated))]
    elif kind == "bomb":  # a member that inflates far beyond its compressed size
        name = rng.choice([pickle_name, *tensor_names])
        mutated[name] = bytes(rng.choice([1 << 20, 64 << 20]))
        compress[name] = True
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in mutated.items():
            archive.writestr(name, data, zipfile.ZIP_DEFLATED if compress.get(name) else zipfile.ZIP_STORED)
    data = buffer.getvalue()
    if kind == "zip-bytes":  # headers and the central directory, mostly
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            where = rng.randrange(len(data) - 2000, len(data)) if rng.random() < 0.7 else rng.randrange(len(data))
            data[where] = rng.randrange(256)
        data = bytes(data)
    return kind, data


outcomes, escaped, slowest = {}, [], 0.0
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
path = f"{folder}/mutated.pt"
for _ in range(count):
    kind, data = mutate()
    with open(path, "wb") as handle:
        handle.write(data)
    start = time.perf_counter()
    try:
        load_weights(path)
        outcome = "loaded"
    except CheckpointError as exc:
        outcome = type(exc).__name__
    except BaseException as exc:
        outcome = "escaped"
        escaped.append(f"{kind}: {type(exc).__name__}: {exc}"[:300])
    slowest = max(slowest, time.perf_counter() - start)
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
print(json.dumps({"outcomes": outcomes, "escaped": escaped, "slowest": slowest, "rss_growth": rss_growth}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS to contain the allocations")
def test_mutated_checkpoints_fail_cleanly_within_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    source = tmp_path / "small.pt"
    torch.save(_as_ultralytics(YoloV8Seg(SMALL_CONFIG).eval(), monkeypatch), source)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(source), str(tmp_path), str(MUTATIONS)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["escaped"] == [], report
    assert sum(report["outcomes"].values()) == MUTATIONS
    # Both ends occur: some mutations leave a loadable file, most are refused (bombs as unsafe).
    assert report["outcomes"].get("CheckpointError", 0) > MUTATIONS // 2
    assert report["outcomes"].get("UnsafeCheckpointError", 0) > 0
    assert report["slowest"] < SECONDS_PER_LOAD, report
    assert report["rss_growth"] < RSS_GROWTH_BYTES, report
