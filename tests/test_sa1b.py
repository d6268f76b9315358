"""SA-1B: the direct reader and the YOLO-seg converter, on synthetic SA-1B-format images (shapes drawn here,
encoded with pycocotools): RLE -> polygons -> mask round trips, tars, parallel workers, resume, bad inputs."""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fastsam.errors import InvalidInputError
from fastsam.train.data import Sa1bSource, open_source
from fastsam.train.data.cli import register
from fastsam.train.data.polygons import rasterize
from fastsam.train.data.sa1b_convert import MANIFEST, convert_sa1b
from fastsam.train.data.yolo import YoloSegSource

WIDTH, HEIGHT = 160, 120


def _shapes(seed: int) -> list[np.ndarray]:
    """Full-resolution boolean masks: a disc, a rotated rectangle, a triangle and a two-part instance."""
    rng = np.random.default_rng(seed)
    masks = []
    disc = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.circle(disc, (int(rng.integers(30, 50)), 40), 22, 1, -1)
    masks.append(disc)
    rectangle = np.zeros_like(disc)
    box = cv2.boxPoints(((110, 40), (50, 26), float(rng.uniform(0, 90)))).astype(np.int32)
    cv2.fillPoly(rectangle, [box], 1)
    masks.append(rectangle)
    triangle = np.zeros_like(disc)
    cv2.fillPoly(triangle, [np.array([[20, 110], [70, 110], [45, 75]], np.int32)], 1)
    masks.append(triangle)
    two_parts = np.zeros_like(disc)
    two_parts[80:110, 90:110] = 1
    two_parts[85:100, 125:150] = 1
    masks.append(two_parts)
    return [m.astype(bool) for m in masks]


def _record(masks: list[np.ndarray], name: str) -> dict:
    annotations = []
    for k, mask in enumerate(masks):
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        annotations.append({"id": k, "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                            "bbox": [float(v) for v in coco_mask.toBbox(rle)], "area": int(coco_mask.area(rle)),
                            "predicted_iou": 0.9, "stability_score": 0.95})
    return {"image": {"image_id": 1, "width": WIDTH, "height": HEIGHT, "file_name": f"{name}.jpg"},
            "annotations": annotations}


def _jpeg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def make_sa1b_folder(folder: Path, count: int, first: int = 1) -> dict[str, list[np.ndarray]]:
    """Write sa_N.jpg + sa_N.json pairs; returns each name's true masks."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for n in range(first, first + count):
        name = f"sa_{n}"
        truth[name] = _shapes(n)
        (folder / f"{name}.jpg").write_bytes(_jpeg(n))
        (folder / f"{name}.json").write_text(json.dumps(_record(truth[name], name)))
    return truth


def make_sa1b_tar(path: Path, count: int, first: int = 1) -> dict[str, list[np.ndarray]]:
    """An SA-1B-style tar (./sa_N.jpg next to ./sa_N.json), built in memory."""
    truth = {}
    with tarfile.open(path, "w") as archive:
        for n in range(first, first + count):
            name = f"sa_{n}"
            truth[name] = _shapes(n)
            for suffix, data in ((".jpg", _jpeg(n)), (".json", json.dumps(_record(truth[name], name)).encode())):
                info = tarfile.TarInfo(f"./{name}{suffix}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return truth


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _check_round_trip(segments: list[list[np.ndarray]], masks: list[np.ndarray], bar: float = 0.95) -> None:
    assert len(segments) == len(masks)
    drawn = rasterize(segments, HEIGHT, WIDTH).astype(bool)
    for k, mask in enumerate(masks):
        assert _iou(drawn[k], mask) >= bar, (k, _iou(drawn[k], mask))


def test_reader_round_trip_exact_without_simplification(tmp_path: Path) -> None:
    truth = make_sa1b_folder(tmp_path / "sa", 2)
    source = open_source(tmp_path / "sa")
    assert isinstance(source, Sa1bSource) and len(source) == 2
    sample = source.load(0)
    assert sample.image.shape == (HEIGHT, WIDTH, 3)
    # Outlines through boundary-pixel centres, filled at full resolution: the very same pixels.
    _check_round_trip(sample.segments, truth["sa_1"], bar=1.0)
    assert len(sample.segments[3]) == 2  # the two-part instance keeps both parts
    disc = truth["sa_1"][0]
    ys, xs = np.nonzero(disc)
    np.testing.assert_allclose(sample.boxes[0], [xs.min() + 0.5, ys.min() + 0.5, xs.max() + 0.5, ys.max() + 0.5])


def test_convert_folder_round_trip_and_resume(tmp_path: Path) -> None:
    truth = make_sa1b_folder(tmp_path / "sa", 3)
    summary = convert_sa1b(tmp_path / "sa", tmp_path / "out", workers=1, progress=False)
    assert (summary.converted, summary.skipped, summary.errors, summary.instances) == (3, 0, 0, 12)
    for name in truth:
        copied = (tmp_path / "out" / "images" / f"{name}.jpg").read_bytes()
        assert copied == (tmp_path / "sa" / f"{name}.jpg").read_bytes()
        lines = (tmp_path / "out" / "labels" / f"{name}.txt").read_text().splitlines()
        assert len(lines) == 4 and all(line.startswith("0 ") for line in lines)
    # The YOLO-seg result reads back (RLE -> simplified polygons -> one line each -> mask) at IoU >= 0.95.
    converted = open_source(tmp_path / "out")
    assert isinstance(converted, YoloSegSource) and len(converted) == 3
    for i in range(3):
        _check_round_trip(converted.load(i).segments, truth[converted.image_path(i).stem])
    # Resume: the finished images are skipped, a new one is converted, a removed label is redone.
    make_sa1b_folder(tmp_path / "sa", 1, first=4)
    (tmp_path / "out" / "labels" / "sa_2.txt").unlink()
    again = convert_sa1b(tmp_path / "sa", tmp_path / "out", workers=1, progress=False)
    assert (again.converted, again.skipped) == (2, 2)
    assert sorted(p.stem for p in (tmp_path / "out" / "labels").iterdir()) == ["sa_1", "sa_2", "sa_3", "sa_4"]


def test_convert_tars_in_parallel_and_skip_finished_tars(tmp_path: Path) -> None:
    tars = tmp_path / "tars"
    tars.mkdir()
    truth = make_sa1b_tar(tars / "sa_000000.tar", 3)
    truth.update(make_sa1b_tar(tars / "sa_000001.tar", 2, first=10))
    summary = convert_sa1b(tars, tmp_path / "out", workers=2, progress=False)
    assert (summary.converted, summary.errors) == (5, 0)
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert sorted(entry["images"] for entry in manifest["done"].values()) == [2, 3]
    converted = YoloSegSource(tmp_path / "out")
    for i in range(len(converted)):
        _check_round_trip(converted.load(i).segments, truth[converted.image_path(i).stem])
    # A finished tar is not even opened again: replace one with garbage of the same name and size.
    first = tars / "sa_000000.tar"
    size = first.stat().st_size
    again = convert_sa1b(tars, tmp_path / "out", workers=2, progress=False)
    assert (again.converted, again.skipped) == (0, 5)
    first.write_bytes(b"\0" * size)
    assert convert_sa1b(first, tmp_path / "out", workers=1, progress=False).skipped == 3


def test_bad_images_are_recorded_not_fatal(tmp_path: Path) -> None:
    make_sa1b_folder(tmp_path / "sa", 2)
    (tmp_path / "sa" / "sa_2.json").write_text("{not json")
    (tmp_path / "sa" / "sa_3.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "sa" / "sa_3.json").write_text(json.dumps(_record(_shapes(3), "sa_3")))
    summary = convert_sa1b(tmp_path / "sa", tmp_path / "out", workers=1, progress=False)
    assert (summary.converted, summary.errors) == (1, 2)
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["name"] for e in errors) == ["sa_2", "sa_3"]
    assert not (tmp_path / "out" / "labels" / "sa_2.txt").exists()


def test_convert_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not a folder or a tar"):
        convert_sa1b(tmp_path / "missing", tmp_path / "out", progress=False)
    make_sa1b_folder(tmp_path / "sa", 1)
    with pytest.raises(InvalidInputError, match="workers"):
        convert_sa1b(tmp_path / "sa", tmp_path / "out", workers=-1, progress=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidInputError, match="not a folder"):
        convert_sa1b(tmp_path / "sa", tmp_path / "file", progress=False)


def test_cli_subcommand(tmp_path: Path) -> None:
    make_sa1b_folder(tmp_path / "sa", 2)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["convert-sa1b", str(tmp_path / "sa"), str(tmp_path / "out"), "--workers", "1",
                              "--quiet"])
    assert args.handler(args) == 0
    assert len(list((tmp_path / "out" / "labels").glob("*.txt"))) == 2


def test_interrupted_tar_resumes_with_nothing_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastsam.train.data import sa1b_convert

    truth = make_sa1b_tar(tmp_path / "sa_000000.tar", 4)
    real = sa1b_convert.convert_one
    calls = []

    def interrupted(*args, **kwargs) -> int:
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sa1b_convert, "convert_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_sa1b(tmp_path / "sa_000000.tar", tmp_path / "out", workers=1, progress=False)
    assert sorted(p.stem for p in (tmp_path / "out" / "labels").iterdir()) == ["sa_1", "sa_2"]
    assert not (tmp_path / "out" / MANIFEST).exists()  # the tar is not finished
    monkeypatch.setattr(sa1b_convert, "convert_one", real)
    summary = convert_sa1b(tmp_path / "sa_000000.tar", tmp_path / "out", workers=1, progress=False)
    assert (summary.converted, summary.skipped) == (2, 2)
    converted = YoloSegSource(tmp_path / "out")
    assert len(converted) == 4
    for i in range(4):
        _check_round_trip(converted.load(i).segments, truth[converted.image_path(i).stem])
    assert not list((tmp_path / "out").rglob("*.tmp*"))  # no half-written file left behind


def test_a_truncated_tar_is_recorded_and_the_rest_converted(tmp_path: Path) -> None:
    tars = tmp_path / "tars"
    tars.mkdir()
    make_sa1b_tar(tars / "sa_000000.tar", 3)
    make_sa1b_tar(tars / "sa_000001.tar", 2, first=10)
    data = (tars / "sa_000000.tar").read_bytes()
    (tars / "sa_000000.tar").write_bytes(data[: len(data) * 2 // 3])  # cut inside the third image
    summary = convert_sa1b(tars, tmp_path / "out", workers=1, progress=False)
    assert summary.converted == 2 + 2 and summary.errors == 1
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert errors[0]["source"].endswith("sa_000000.tar") and errors[0]["name"] is None
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert [key.split(":")[0].endswith("sa_000001.tar") for key in manifest["done"]] == [True]
