"""The ``fastsam`` command end to end: outputs on disk, prompts, errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fastsam.cli import main
from tests.paths import FIXTURES

REPO = Path(__file__).resolve().parents[1]
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "fastsam-s-parity.pt").is_file(), reason="../shared/fixtures absent")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("img") / "noise.png"
    cv2.imwrite(str(path), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FASTSAM_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "fastsam", *args], capture_output=True, text=True, env=env, timeout=300)


def test_user_errors_exit_2_with_one_line(tmp_path, tiny_model, image):
    cases = [
        ["segment", str(tmp_path / "missing.jpg"), "--model", str(tiny_model)],
        ["segment", str(image), "--model", str(tmp_path / "nope.pt")],
        ["segment", str(image), "--model", str(tiny_model), "--points", "1,2,3"],
        ["segment", str(image), "--model", str(tiny_model), "--points", "5,5", "--labels", "1", "0"],
        ["segment", str(image), "--model", str(tiny_model), "--points", "500,5"],
        ["segment", str(image), "--model", str(tiny_model), "--boxes", "10,10,5,20"],
        ["segment", str(image), "--model", str(tiny_model), "--imgsz", "1000"],
    ]
    for argv in cases:
        done = run_cli(*argv, "--out", str(tmp_path / "out"))
        assert done.returncode == 2, (argv, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("fastsam: error: "), (argv, done.stderr)
        assert "Traceback" not in done.stderr


def test_bad_image_among_good_ones_does_not_stop_the_run(tmp_path, tiny_model, image):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code = main(["segment", str(broken), str(image), "--model", str(tiny_model), "--conf", "0.0", "--max-det", "5",
                 "--imgsz", "128", "--format", "json", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    document = json.loads((tmp_path / "out" / "noise.json").read_text())
    assert document["images"][0]["width"] == 128 and len(document["annotations"]) == 5


def test_folder_input_and_duplicate_stems(tmp_path, tiny_model, image):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for target in (folder / "a.png", folder / "a.jpg", folder / "notes.txt"):
        target.write_bytes(image.read_bytes())
    code = main(["segment", str(folder), "--model", str(tiny_model), "--imgsz", "128", "--conf", "0.0",
                 "--max-det", "3", "--format", "json", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json", "a_1.json"]


def test_convert_then_segment_gives_same_result(tmp_path):
    if not (FIXTURES / "fastsam-s-parity.pt").is_file():
        pytest.skip("../shared/fixtures absent")
    dest = tmp_path / "s.safetensors"
    assert main(["convert", str(FIXTURES / "fastsam-s-parity.pt"), str(dest)]) == 0
    outs = []
    for model in (FIXTURES / "fastsam-s-parity.pt", dest):
        out = tmp_path / model.suffix.strip(".")
        assert main(["segment", str(FIXTURES / "images" / "dogs.jpg"), "--model", str(model), "--format", "json",
                     "--out", str(out), "--quiet"]) == 0
        outs.append(json.loads((out / "dogs.json").read_text())["annotations"])
    assert [a["segmentation"] for a in outs[0]] == [a["segmentation"] for a in outs[1]]


@needs_fixtures
def test_everything_outputs_end_to_end(tmp_path):
    out = tmp_path / "out"
    done = run_cli("segment", str(FIXTURES / "images" / "dogs.jpg"), "--model", str(FIXTURES / "fastsam-s-parity.pt"),
                   "--format", "json", "png", "labels", "polygons", "overlay", "--out", str(out))
    assert done.returncode == 0, done.stderr
    document = json.loads((out / "dogs.json").read_text())
    golden = json.loads((FIXTURES / "golden_s.json").read_text())["records"][0]
    assert document["images"][0]["file_name"] == "dogs.jpg"
    assert len(document["annotations"]) == len(golden["everything"]["masks"])
    first = document["annotations"][0]
    decoded = coco_mask.decode({"size": first["segmentation"]["size"],
                                "counts": first["segmentation"]["counts"].encode()})
    assert decoded.shape == (603, 1072) and decoded.sum() == first["area"]
    pngs = sorted((out / "dogs").glob("*.png"))
    assert len(pngs) == len(document["annotations"])
    assert (cv2.imread(str(pngs[0]), cv2.IMREAD_GRAYSCALE) > 0).sum() == first["area"]
    labels = cv2.imread(str(out / "dogs_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (603, 1072) and labels.max() >= 1
    overlay = cv2.imread(str(out / "dogs_overlay.png"))
    original = cv2.imread(str(FIXTURES / "images" / "dogs.jpg"))
    assert overlay.shape == original.shape and (overlay != original).any()
    assert json.loads((out / "dogs_polygons.json").read_text())


@needs_fixtures
def test_prompts_from_the_command_line(tmp_path):
    out = tmp_path / "out"
    golden = json.loads((FIXTURES / "golden_s.json").read_text())["records"][0]
    box = golden["box_prompts"][0]
    points = golden["point_prompts"][0]
    argv = ["segment", str(FIXTURES / "images" / "dogs.jpg"), "--model", str(FIXTURES / "fastsam-s-parity.pt"),
            "--boxes", ",".join(str(v) for v in box["box"]),
            "--points", *[f"{x},{y}" for x, y in points["points"]], "--labels", *[str(v) for v in points["labels"]],
            "--format", "json", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    annotations = json.loads((out / "dogs.json").read_text())["annotations"]
    assert [a["prompt"] for a in annotations] == ["box 0", "points"]
    for annotation, expected in zip(annotations, (box["masks"][0], points["masks"][0])):
        ours = coco_mask.decode({"size": annotation["segmentation"]["size"],
                                 "counts": annotation["segmentation"]["counts"].encode()})
        theirs = coco_mask.decode({"size": expected["size"], "counts": expected["counts"].encode()})
        assert np.logical_and(ours, theirs).sum() / max(np.logical_or(ours, theirs).sum(), 1) >= 0.98


def test_text_prompt_from_the_command_line(tmp_path, tiny_model, image):
    pytest.importorskip("transformers")
    from fastsam.prompts.text import build_random_clip

    clip = build_random_clip(tmp_path / "clip")
    out = tmp_path / "out"
    code = main(["segment", str(image), "--model", str(tiny_model), "--imgsz", "128", "--conf", "0.0",
                 "--max-det", "20", "--text", "a dog", "--text", "a cat", "--text-mode", "topk", "--text-top-k", "2",
                 "--text-model", str(clip), "--format", "json", "--out", str(out), "--quiet"])
    assert code == 0
    prompts = [a["prompt"] for a in json.loads((out / "noise.json").read_text())["annotations"]]
    assert prompts.count("text 0: 'a dog'") == 2 and prompts.count("text 1: 'a cat'") == 2
    missing = main(["segment", str(image), "--model", str(tiny_model), "--imgsz", "128", "--conf", "0.0",
                    "--text", "a dog", "--text-model", str(tmp_path / "no-clip"), "--out", str(out), "--quiet"])
    assert missing == 2


def test_export_and_onnx_backend_from_the_command_line(tmp_path):
    pytest.importorskip("onnxruntime")
    if not (FIXTURES / "fastsam-s-parity.pt").is_file():
        pytest.skip("../shared/fixtures absent")
    onnx_path = tmp_path / "s.onnx"
    assert main(["export", str(FIXTURES / "fastsam-s-parity.pt"), str(onnx_path)]) == 0
    outs = {}
    for backend, model in (("torch", FIXTURES / "fastsam-s-parity.pt"), ("onnx", onnx_path)):
        out = tmp_path / backend
        assert main(["segment", str(FIXTURES / "images" / "dogs.jpg"), "--model", str(model), "--backend", backend,
                     "--boxes", "494,70,1002,581", "--format", "json", "--out", str(out), "--quiet"]) == 0
        outs[backend] = json.loads((out / "dogs.json").read_text())["annotations"]
    assert outs["onnx"][0]["prompt"] == "box 0" and outs["onnx"][0]["instance_id"] == outs["torch"][0]["instance_id"]
    assert main(["export", str(FIXTURES / "fastsam-s-parity.pt"), str(tmp_path / "bad.txt")]) == 2


@pytest.mark.skipif(not (FIXTURES / "images" / "dogs.jpg").is_file(), reason="../shared/fixtures absent")
def test_readme_main_command_runs_the_bundled_model_offline(tmp_path):
    env_cache = tmp_path / "empty-cache"
    done = subprocess.run(
        [sys.executable, "-m", "fastsam", "segment", str(FIXTURES / "images" / "dogs.jpg"), "--format", "overlay",
         "json", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "FASTSAM_OFFLINE": "1", "FASTSAM_CACHE": str(env_cache)})
    assert done.returncode == 0, done.stderr
    assert "fastsam-default" in done.stderr  # says it fell back to the bundled model
    annotations = json.loads((tmp_path / "out" / "dogs.json").read_text())["annotations"]
    assert annotations, "the bundled model found nothing in dogs.jpg"
    height, width = cv2.imread(str(FIXTURES / "images" / "dogs.jpg")).shape[:2]
    areas = [coco_mask.area(d["segmentation"]) for d in annotations]
    assert all(d["segmentation"]["size"] == [height, width] for d in annotations)
    assert max(areas) > 0.01 * height * width  # at least one object-sized mask, not specks
    overlay = cv2.imread(str(tmp_path / "out" / "dogs_overlay.png"))
    assert overlay.shape[:2] == (height, width)


# ------------------------------------------------------------------------------------------ hostile inputs
def _segment_json(*args: str) -> list[str]:
    return ["segment", *args, "--conf", "0.0", "--max-det", "3", "--imgsz", "128", "--format", "json", "--quiet"]


def test_very_thin_images_are_segmented_and_the_next_image_still_runs(tmp_path, tiny_model, image):
    shapes = {"wide": (2, 5000), "wider": (1, 20000), "tall": (20000, 1)}
    paths = []
    for name, shape in shapes.items():
        paths.append(tmp_path / f"{name}.png")
        cv2.imwrite(str(paths[-1]), np.full((*shape, 3), 200, np.uint8))
    code = main(_segment_json(*map(str, paths), str(image), "--model", str(tiny_model), "--out", str(tmp_path / "out")))
    assert code == 0
    for name, (height, width) in shapes.items():
        document = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert (document["images"][0]["height"], document["images"][0]["width"]) == (height, width)
        for annotation in document["annotations"]:
            assert coco_mask.decode(annotation["segmentation"]).shape == (height, width)
    assert (tmp_path / "out" / "noise.json").is_file()


def test_decoder_crash_on_one_image_does_not_stop_the_others(tmp_path, tiny_model, image, capsys):
    from tests.test_inputs import tiff_with_rational_strip_offsets

    tiff = tmp_path / "strip.tif"
    tiff.write_bytes(tiff_with_rational_strip_offsets())
    code = main(_segment_json(str(tiff), str(image), "--model", str(tiny_model), "--out", str(tmp_path / "out")))
    assert code == 2
    assert (tmp_path / "out" / "noise.json").is_file() and not (tmp_path / "out" / "strip.json").exists()
    err = capsys.readouterr().err
    assert err.count("fastsam: error: ") == 1 and "strip.tif" in err and "Traceback" not in err


def test_unexpected_exception_on_one_image_does_not_stop_the_others(tmp_path, tiny_model, image, monkeypatch,
                                                                     capsys):
    from fastsam.inference.predictor import Predictor

    real_call = Predictor.__call__

    def call(self, source, *args, **kwargs):
        if Path(source).name == "a.png":
            raise RuntimeError("simulated bug")
        return real_call(self, source, *args, **kwargs)

    monkeypatch.setattr(Predictor, "__call__", call)
    (tmp_path / "a.png").write_bytes(image.read_bytes())
    code = main(_segment_json(str(tmp_path / "a.png"), str(image), "--model", str(tiny_model), "--out",
                              str(tmp_path / "out")))
    assert code == 1
    assert (tmp_path / "out" / "noise.json").is_file()
    assert "internal error on" in capsys.readouterr().err


@pytest.fixture
def network_must_not_run(monkeypatch):
    """Makes loading a model fail the test: the command must stop before the network."""
    from fastsam.model import zoo

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(zoo, "load_model", refuse)


def test_output_path_that_is_a_file_is_reported_before_the_network(tmp_path, tiny_model, image, capsys,
                                                                   network_must_not_run):
    (tmp_path / "taken").write_text("x")
    code = main(_segment_json(str(image), "--model", str(tiny_model), "--out", str(tmp_path / "taken")))
    assert code == 2
    assert "is a file" in capsys.readouterr().err
    (tmp_path / "out" / "noise.json").mkdir(parents=True)  # a folder where a file goes
    code = main(_segment_json(str(image), "--model", str(tiny_model), "--out", str(tmp_path / "out")))
    assert code == 2
    assert "noise.json' is a folder" in capsys.readouterr().err


def test_read_only_output_folder_is_reported_before_the_network(tmp_path, tiny_model, image, capsys, monkeypatch,
                                                                network_must_not_run):
    import errno
    import tempfile

    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    code = main(_segment_json(str(image), "--model", str(tiny_model), "--out", str(tmp_path / "out")))
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("fastsam: error: cannot write to folder") and "Read-only file system" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user that file modes restrict")
def test_read_only_output_folder_exits_2_without_traceback(tmp_path, tiny_model, image):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        done = run_cli(*_segment_json(str(image), "--model", str(tiny_model), "--out", str(out)))
    finally:
        out.chmod(0o700)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("fastsam: error: cannot write to folder"), done.stderr


def test_output_folder_turning_read_only_mid_run_fails_that_image_only(tmp_path, tiny_model, image, monkeypatch,
                                                                       capsys):
    import errno

    from fastsam.io import atomic

    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        if Path(target).name == "a.json":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", replace)
    (tmp_path / "a.png").write_bytes(image.read_bytes())
    code = main(_segment_json(str(tmp_path / "a.png"), str(image), "--model", str(tiny_model), "--out",
                              str(tmp_path / "out")))
    assert code == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["noise.json"]  # no temporary file left
    assert "cannot write" in capsys.readouterr().err


def test_written_files_get_the_usual_mode(tmp_path, tiny_model, image):
    umask = os.umask(0o022)
    os.umask(umask)
    main(["segment", str(image), "--model", str(tiny_model), "--conf", "0.0", "--max-det", "2", "--imgsz", "128",
          "--format", "json", "png", "labels", "polygons", "overlay", "--out", str(tmp_path / "out"), "--quiet"])
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(written) == 6
    assert {p.stat().st_mode & 0o777 for p in written} == {0o666 & ~umask}


# ------------------------------------------------------------------------------------------ optional extras
def test_bench_edges_without_scipy_names_the_extra(tmp_path, monkeypatch, capsys, image):
    for folder in ("images/val", "groundTruth/val"):
        (tmp_path / "bsds" / folder).mkdir(parents=True)
    (tmp_path / "bsds" / "images" / "val" / "a.jpg").write_bytes(image.read_bytes())
    (tmp_path / "bsds" / "groundTruth" / "val" / "a.mat").write_bytes(b"MATLAB")
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # what an installation without scipy does on import
    code = main(["bench", "edges", str(tmp_path / "bsds"), "--method", "canny", "--out", str(tmp_path / "out"),
                 "--quiet"])
    assert code == 2
    assert 'pip install "fastsam-torch[eval]"' in capsys.readouterr().err


@pytest.mark.parametrize("error, command, extra", [
    (ModuleNotFoundError("No module named 'matplotlib'"), "bench", "train"),  # as a DataLoader worker re-raises it
    (ModuleNotFoundError("No module named 'scipy.io'", name="scipy.io"), "bench", "eval"),
    (ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime"), "bench", "onnx"),
])
def test_any_missing_optional_package_names_its_extra(tmp_path, monkeypatch, capsys, error, command, extra):
    from fastsam.eval import cli as eval_cli

    def report(_args):
        raise error

    monkeypatch.setattr(eval_cli, "_report", report)
    assert main(["bench", "report", str(tmp_path), "--out", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastsam: error: fastsam {command} needs") and f'pip install "fastsam-torch[{extra}]"' in err


def test_missing_module_of_no_extra_is_a_bug_not_a_user_error(tmp_path, monkeypatch):
    from fastsam.eval import cli as eval_cli

    def report(_args):
        raise ModuleNotFoundError("No module named 'fastsam.nonexistent'", name="fastsam.nonexistent")

    monkeypatch.setattr(eval_cli, "_report", report)
    with pytest.raises(ModuleNotFoundError):
        main(["bench", "report", str(tmp_path), "--out", str(tmp_path / "r.md")])


def test_extra_packages_match_pyproject():
    tomllib = pytest.importorskip("tomllib")
    from fastsam.extras import DISTRIBUTION, EXTRA_PACKAGES

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION  # what the install hints name
    import_names = {"python-multipart": "multipart"}
    for extra, requirements in project["optional-dependencies"].items():
        for requirement in requirements:
            dist = requirement.split(">")[0].split("[")[0].split("=")[0].strip().lower()
            if dist == DISTRIBUTION:
                continue
            assert import_names.get(dist, dist.replace("-", "_")) in EXTRA_PACKAGES[extra], (extra, dist)
