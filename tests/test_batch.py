"""``fastsam batch``: folder / glob / list inputs, the sharded JSONL read back, errors files, prompts, and resume
after a real process is killed part-way (SIGKILL and Ctrl-C), ending with each input exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fastsam.batch import read_errors, read_records, run_batch
from fastsam.batch.cli import main
from fastsam.batch.records import everything_record, prompt_record
from fastsam.batch.shards import OutputFolder
from fastsam.errors import InvalidInputError
from fastsam.inference.predictor import Predictor
from fastsam.model.zoo import load_model

REPO = Path(__file__).resolve().parents[1]
FAST = ["--imgsz", "128", "--conf", "0.0", "--max-det", "5", "--quiet", "--workers", "1"]


def _write_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    """Blurred-noise images of a few sizes, a third in a subfolder; returns their keys."""
    rng = np.random.default_rng(seed)
    keys = []
    for i in range(count):
        key = f"sub/img{i:02d}.png" if i % 3 == 0 else f"img{i:02d}.jpg"
        h, w = (240, 320) if i % 2 else (200, 300)
        image = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (9, 9), 3)
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / key), image)
        keys.append(key)
    return keys


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("images")
    keys = _write_images(folder, 12)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden").mkdir()
    cv2.imwrite(str(folder / ".hidden" / "skip.png"), np.zeros((8, 8, 3), np.uint8))
    return folder, keys


@pytest.fixture(scope="module")
def predictor(tiny_model) -> Predictor:
    return Predictor(load_model(tiny_model, progress=False), imgsz=128, conf=0.0, max_det=5)


def _batch(src: object, dst: Path, model: Path, *extra: str) -> int:
    return main([str(src), str(dst), "--model", str(model), *FAST, *extra])


def _output(dst: Path) -> tuple[list[dict], list[dict]]:
    return list(read_records(dst)), list(read_errors(dst))


def test_folder_records_read_back_and_match_the_predictor(tmp_path, tiny_model, images, predictor):
    folder, keys = images
    dst = tmp_path / "out"
    assert _batch(folder, dst, tiny_model, "--shard-size", "5") == 0
    records, errors = _output(dst)
    assert errors == []
    assert sorted(r["file"] for r in records) == sorted(keys)  # hidden folder and .txt skipped
    assert [r["file"] for r in records] == [json.loads(line) for line in (dst / "inputs.jsonl").read_text().split()]
    shards = sorted(dst.glob("shard-*.jsonl"))
    assert [p.name for p in shards] == ["shard-00000.jsonl", "shard-00001.jsonl", "shard-00002.jsonl"]
    assert [len(p.read_text().splitlines()) for p in shards] == [5, 5, 2]
    for record in records:
        assert set(record) == {"file", "size", "instances"}
        h, w = record["size"]
        assert len(record["instances"]) == 5
        for inst in record["instances"]:
            assert set(inst) == {"box", "score", "area", "rle"} and len(inst["box"]) == 4
            mask = coco_mask.decode({"size": inst["rle"]["size"], "counts": inst["rle"]["counts"].encode()})
            assert mask.shape == (h, w) and int(mask.sum()) == inst["area"]
        assert record == everything_record(record["file"], predictor(folder / record["file"], keep_image=False))
    manifest = json.loads((dst / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["records"] == len(keys) and manifest["errors"] == 0
    assert manifest["identity"]["imgsz"] == 128 and manifest["identity"]["shard_size"] == 5
    assert not [p for p in dst.iterdir() if p.name.endswith(".tmp")]


def test_glob_and_list_file_inputs(tmp_path, tiny_model, images):
    folder, keys = images
    full = tmp_path / "full"
    assert _batch(folder, full, tiny_model) == 0
    by_key = {r["file"]: r for r in read_records(full)}

    flat = tmp_path / "glob"
    assert _batch(f"{folder}/*.jpg", flat, tiny_model) == 0
    jpgs = sorted(k for k in keys if "/" not in k and k.endswith(".jpg"))
    assert [r["file"] for r in read_records(flat)] == jpgs
    deep = tmp_path / "deep"
    assert _batch(f"{folder}/**/*.png", deep, tiny_model) == 0
    assert [r["file"] for r in read_records(deep)] == sorted(k for k in keys if k.endswith(".png"))

    list_dir = tmp_path / "lists"
    list_dir.mkdir()
    listed = [str(folder / keys[4]), os.path.relpath(folder / keys[0], list_dir), str(folder / keys[1])]
    list_file = list_dir / "images.txt"
    list_file.write_text(f"# images to label\n{listed[0]}\n\n{listed[1]}\n{listed[2]}\n")
    out = tmp_path / "list"
    assert _batch(list_file, out, tiny_model) == 0
    records = list(read_records(out))
    assert [r["file"] for r in records] == listed  # keys as written, in listed order
    for record, key in zip(records, (keys[4], keys[0], keys[1])):
        assert {**record, "file": key} == by_key[key]
    for r in read_records(flat):
        assert r == by_key[r["file"]]


def test_unreadable_images_go_to_errors_files_and_do_not_stop_the_run(tmp_path, tiny_model):
    folder = tmp_path / "imgs"
    folder.mkdir()
    keys = _write_images(folder, 5)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("hello")
    dst = tmp_path / "out"
    assert _batch(folder, dst, tiny_model, "--shard-size", "3") == 0
    records, errors = _output(dst)
    assert sorted(r["file"] for r in records) == sorted(keys)
    assert {e["file"]: e["error"] for e in errors} == {"broken.jpg": "ImageReadError", "empty.png": "ImageReadError",
                                                       "text.png": "ImageReadError"}
    reasons = {e["file"]: e["reason"] for e in errors}
    assert "empty" in reasons["empty.png"] and "not a recognised image" in reasons["text.png"]
    # Each input exactly once across records and errors; an errors file only beside its shard.
    inputs = [json.loads(line) for line in (dst / "inputs.jsonl").read_text().split()]
    assert Counter(r["file"] for r in records + errors) == Counter(inputs) and len(inputs) == 8
    for path in dst.glob("errors-*.jsonl"):
        assert (dst / path.name.replace("errors", "shard")).exists()
    assert json.loads((dst / "manifest.json").read_text())["errors"] == 3


def test_prompts_file(tmp_path, tiny_model, images, predictor):
    folder, keys = images
    prompts = [
        {"file": keys[1], "points": [[50, 60], [200, 100]], "labels": [1, 0]},
        {"file": keys[2], "boxes": [[10, 10, 150, 120]], "points": [[30, 30], [100, 90]], "per_point": True},
        {"file": keys[3], "points": [[5000, 5]]},  # outside the image: this image's error
        {"file": "nowhere.jpg", "boxes": [[0, 0, 5, 5]]},  # not an input: a warning
    ]
    prompts_file = tmp_path / "prompts.jsonl"
    prompts_file.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    dst = tmp_path / "out"
    assert _batch(folder, dst, tiny_model, "--prompts", str(prompts_file)) == 0
    records, errors = _output(dst)
    assert [r["file"] for r in records] == sorted(keys[1:3])
    for record in records:
        prompt = next({k: v for k, v in p.items() if k != "file"} for p in prompts if p["file"] == record["file"])
        result = predictor(folder / record["file"], keep_image=False)
        assert record == prompt_record(record["file"], result, prompt)
        assert record["masks"] and {"prompt", "instance", "box", "score", "area", "rle"} == set(record["masks"][0])
    by_file = {e["file"]: e for e in errors}
    assert set(by_file) == set(keys) - {keys[1], keys[2]}
    assert by_file[keys[3]]["error"] == "InvalidInputError"
    assert "no prompt" in by_file[keys[0]]["reason"]


def test_user_errors_exit_2_with_one_line(tmp_path, tiny_model, images, capsys):
    folder, _ = images
    bad_prompts = tmp_path / "bad.jsonl"
    bad_prompts.write_text('{"file": "a.jpg", "points": [[1, 2]]}\n{"file": "b.jpg", "point": [[1, 2]]}\n')
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        [str(tmp_path / "missing"), str(tmp_path / "o1")],
        [f"{tmp_path}/*.nothing", str(tmp_path / "o2")],
        [str(empty), str(tmp_path / "o3")],
        [str(folder), str(tmp_path / "o4"), "--prompts", str(bad_prompts)],
        [str(folder), str(tmp_path / "o5"), "--shard-size", "0"],
        [str(folder), str(tmp_path / "o6"), "--imgsz", "100"],
    ]
    messages = []
    for argv in cases:
        capsys.readouterr()
        assert main([*argv, "--model", str(tiny_model), "--quiet"]) == 2, argv
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("fastsam: error: "), (argv, lines)
        messages.append(lines[0])
    assert "bad.jsonl:2: unknown field(s) point" in messages[3]
    assert "imgsz must be a multiple of 32" in messages[5]
    assert not (tmp_path / "o5").exists()


def test_rerun_with_other_settings_or_inputs_is_refused(tmp_path, tiny_model):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _write_images(folder, 4)
    dst = tmp_path / "out"
    assert _batch(folder, dst, tiny_model, "--shard-size", "2") == 0
    before = {p.name: p.stat().st_mtime_ns for p in dst.glob("shard-*.jsonl")}
    summary = run_batch(folder, dst, tiny_model, imgsz=128, conf=0.0, max_det=5, shard_size=2, workers=1)
    assert summary.processed == 0 and summary.records == 4  # complete: nothing to do
    assert before == {p.name: p.stat().st_mtime_ns for p in dst.glob("shard-*.jsonl")}
    with pytest.raises(InvalidInputError, match="imgsz 128 then, 160 now"):
        run_batch(folder, dst, tiny_model, imgsz=160, conf=0.0, max_det=5, shard_size=2)
    with pytest.raises(InvalidInputError, match="shard_size 2 then, 3 now"):
        run_batch(folder, dst, tiny_model, imgsz=128, conf=0.0, max_det=5, shard_size=3)
    cv2.imwrite(str(folder / "late.png"), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="4 inputs then, 5 now"):
        run_batch(folder, dst, tiny_model, imgsz=128, conf=0.0, max_det=5, shard_size=2)


def test_shard_commit_is_all_or_nothing(tmp_path):
    out = OutputFolder(tmp_path)
    writer = out.writer(0)
    writer.add('{"file": "a"}', False)
    writer.add('{"file": "b", "error": "X"}', True)
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    # A crash between the errors file and the shard leaves an orphan errors file: removed, never counted.
    writer = out.writer(1)
    writer.add('{"file": "c", "error": "X"}', True)
    writer._error_file.commit()
    writer._error_file = None
    out.remove_leftovers()
    assert not out.errors_path(1).exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    writer = out.writer(1)
    writer.add('{"file": "c"}', False)
    writer.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00001.jsonl"]


def test_one_job_per_output_folder(tmp_path):
    first, second = OutputFolder(tmp_path), OutputFolder(tmp_path)
    first.lock()
    try:
        with pytest.raises(InvalidInputError, match="another fastsam job"):
            second.lock()
    finally:
        first.unlock()
    second.lock()
    second.unlock()


# ------------------------------------------------------------------------------------------ kill and resume
def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _start(src: Path, dst: Path, model: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FASTSAM_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "fastsam.batch", str(src), str(dst), "--model", str(model), *FAST,
                             "--shard-size", "2", *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    # A job started from a background shell inherits SIGINT ignored, and Python keeps it ignored: restore the
    # default so that the job sees Ctrl-C as it would in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_shards(proc: subprocess.Popen, dst: Path, count: int, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while len(list(dst.glob("shard-*.jsonl"))) < count:
        assert proc.poll() is None, f"the job ended before it could be interrupted: {proc.communicate()}"
        assert time.monotonic() < end, "no progress"
        time.sleep(0.01)


def test_killed_job_resumes_to_exactly_one_record_per_input(tmp_path, tiny_model):
    folder = tmp_path / "imgs"
    folder.mkdir()
    # Enough shards that a signal sent after one more shard lands always arrives before the job's end.
    keys = _write_images(folder, 80, seed=1)
    (folder / "broken.jpg").write_bytes(b"GIF89a broken")
    reference = tmp_path / "reference"
    assert _batch(folder, reference, tiny_model, "--shard-size", "2") == 0
    dst = tmp_path / "out"
    total_shards = (len(keys) + 1 + 1) // 2

    # 1. A crash: SIGKILL to the single-process job once it has committed a shard.
    proc = _start(folder, dst, tiny_model)
    _wait_for_shards(proc, dst, 1)
    proc.kill()
    proc.wait(30)
    first = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dst.glob("shard-*.jsonl")}
    assert 1 <= len(first) < total_shards

    # 2. SIGKILL to the parent of a two-worker job: its workers must die with it.
    proc = _start(folder, dst, tiny_model, "--workers", "2")
    _wait_for_shards(proc, dst, len(first) + 1)
    workers = _children(proc.pid)
    proc.kill()
    proc.wait(30)
    end = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < end:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "worker processes outlived their killed parent"
    second = {p.name for p in dst.glob("shard-*.jsonl")}
    assert len(second) < total_shards

    # 3. Ctrl-C (SIGINT to the process group, as a terminal sends it) to a two-worker job.
    proc = _start(folder, dst, tiny_model, "--workers", "2")
    _wait_for_shards(proc, dst, len(second) + 1)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr

    # 4. The same command again, to the end.
    proc = _start(folder, dst, tiny_model)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    records, errors = _output(dst)
    assert Counter(r["file"] for r in records + errors) == Counter([*keys, "broken.jpg"])
    assert (records, errors) == _output(reference)
    for name, path in ((n, dst / n) for n in sorted(p.name for p in reference.glob("*.jsonl"))):
        assert path.read_bytes() == (reference / name).read_bytes(), name
    assert sorted(p.name for p in dst.glob("*.jsonl")) == sorted(p.name for p in reference.glob("*.jsonl"))
    # Shards committed before the first kill were not recomputed.
    assert first == {n: (dst.joinpath(n).stat().st_ino, dst.joinpath(n).stat().st_mtime_ns) for n in first}
    assert not [p for p in dst.iterdir() if p.name.endswith(".tmp")]
    manifest = json.loads((dst / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [r["status"] for r in manifest["runs"]][-2:] == ["interrupted", "complete"]


def test_register_adds_the_batch_subcommand():
    import argparse

    from fastsam.batch.cli import register, run

    parser = argparse.ArgumentParser(prog="fastsam")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["batch", "src", "dst", "--workers", "2", "--engine", "ray", "--prompts", "p.jsonl"])
    assert (args.command, args.handler, args.source, args.dest) == ("batch", run, "src", "dst")
    assert (args.workers, args.engine, args.prompts, args.shard_size, args.lookahead) == (2, "ray", "p.jsonl", 64, 2)


def test_fastsam_batch_through_the_main_cli(tmp_path, tiny_model, images):
    from fastsam import cli

    commands = next(a for a in cli._build_parser()._actions if a.dest == "command")
    if "batch" not in commands.choices:
        pytest.skip("fastsam.cli does not register the batch subcommand yet")
    folder, keys = images
    assert cli.main(["batch", str(folder), str(tmp_path / "out"), "--model", str(tiny_model), *FAST]) == 0
    assert sorted(r["file"] for r in read_records(tmp_path / "out")) == sorted(keys)
    assert cli.main(["batch", str(tmp_path / "missing"), str(tmp_path / "o"), "--model", str(tiny_model)]) == 2
