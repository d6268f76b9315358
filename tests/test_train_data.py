"""Training-data readers (YOLO-seg, COCO, BSDS500), open_source, ConcatSource, COCO ground truth, polygon
helpers, the dataset and collation: hand-made cases always, the real ../shared/data sets when present."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from fastsam.errors import ImageReadError, InvalidInputError
from fastsam.train.data import (AugmentConfig, BsdsSource, CocoSource, ConcatSource, TrainingDataset,
                                YoloSegSource, coco_ground_truth, collate_batch, open_source, open_sources)
from fastsam.train.data.sampling import SourceWeightedSampler
from fastsam.train.data.sources import source_weights, split_spec, split_weight
from fastsam.train.data.polygons import (clip_polygon, mask_to_polygons, merge_polygons, polygon_area,
                                         rasterize, rle_to_polygons)
from fastsam.train.data.rle_crop import decode_box, rle_runs
from fastsam.train.data.yolo import parse_yolo_labels
from tests.paths import DATA


def _square(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def _write_image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 90, np.uint8))


# ------------------------------------------------------------------------------------------- polygons
def test_clip_polygon_known_answers() -> None:
    inside = _square(1, 1, 5, 5)
    assert clip_polygon(inside, 10, 10) is inside
    corner = clip_polygon(_square(-5, -5, 5, 5), 10, 10)
    assert polygon_area(corner) == 25 and corner.min() == 0 and corner.max() == 5
    assert len(clip_polygon(_square(20, 20, 30, 30), 10, 10)) == 0
    # A triangle over the right border: the part with x <= 10 of (0,0) (20,0) (0,20) is a trapezoid.
    cut = clip_polygon(np.array([[0, 0], [20, 0], [0, 20]], np.float32), 10, 30)
    assert polygon_area(cut) == pytest.approx(200 - 50) and cut[:, 0].max() == 10


def test_mask_polygon_round_trip_and_parts() -> None:
    mask = np.zeros((40, 50), bool)
    mask[5:15, 10:30] = True
    mask[25:35, 3:8] = True
    mask[30, 40] = True  # a single pixel: no area, dropped
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 2
    np.testing.assert_array_equal(rasterize([polygons], 40, 50)[0].astype(bool), mask & ~(np.arange(50) == 40)[None])
    # A crop with its offset gives the same outlines in image pixels.
    shifted = mask_to_polygons(mask[5:15, 10:30], offset=(10, 5))
    np.testing.assert_allclose(shifted[0], [p for p in polygons if p[:, 1].min() < 20][0])


def test_rle_to_polygons_compressed_and_uncompressed() -> None:
    mask = np.zeros((30, 40), np.uint8)
    cv2.circle(mask, (20, 15), 9, 1, -1)
    rle = coco_mask.encode(np.asfortranarray(mask))
    compressed = {"size": rle["size"], "counts": rle["counts"].decode()}
    runs = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(np.concatenate([[0], mask.T.ravel(), [2]]))) ]))
    uncompressed = {"size": [30, 40], "counts": [int(v) for v in runs]}
    for candidate in (compressed, uncompressed):
        drawn = rasterize([rle_to_polygons(candidate)], 30, 40)[0]
        np.testing.assert_array_equal(drawn, mask)
    with pytest.raises(InvalidInputError):
        rle_to_polygons({"counts": "abc"})
    with pytest.raises(InvalidInputError, match="add up"):
        rle_to_polygons({"size": [30, 40], "counts": compressed["counts"][:-3]})


def test_rle_runs_match_pycocotools_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    for height, width, density in ((1, 1, 0.5), (7, 300, 0.02), (64, 48, 0.5), (200, 150, 0.97)):
        mask = (rng.random((height, width)) < density).astype(np.uint8)
        mask[: height // 2, : width // 3] = 1  # long runs, many-character counts
        rle = coco_mask.encode(np.asfortranarray(mask))
        runs = rle_runs({"size": rle["size"], "counts": rle["counts"].decode()})
        np.testing.assert_array_equal(runs.decode(), mask.astype(bool))
        np.testing.assert_array_equal(decode_box(runs, 0, 0, width, height), mask)
        if width > 4:
            np.testing.assert_array_equal(decode_box(runs, 2, 1, width // 2, height), mask[1:, 2:width // 2])


def test_rasterize_low_resolution_is_the_cell_majority() -> None:
    # A square over image pixels [8.3, 24.3) covers mask cells 2..5 at ratio 4 (cell 6 holds one of its pixel
    # columns). Shifted by 1, cell 2 keeps 3 of 4 columns (on), cell 6 gets 1 (off); by 2, 2 of 4 each (off,
    # on: OpenCV's fill reaches half a pixel past the edges, whose ends fall in different cells).
    for shift, cells in ((0, (2, 6)), (1, (2, 6)), (2, (3, 7))):
        mask = rasterize([[_square(8.3 + shift, 8.3, 24.3 + shift, 24.3)]], 10, 10, ratio=4)[0]
        ys, xs = np.nonzero(mask)
        assert (xs.min(), xs.max() + 1) == cells and (ys.min(), ys.max() + 1) == (2, 6), shift
    # Traced from a mask: each cell is on when most of its pixels are.
    mask = np.zeros((40, 40), bool)
    mask[9:31, 5:18] = True
    coarse = rasterize([mask_to_polygons(mask)], 10, 10, ratio=4)[0]
    majority = mask.reshape(10, 4, 10, 4).sum(axis=(1, 3)) > 8
    np.testing.assert_array_equal(coarse.astype(bool), majority)


def test_merge_polygons_bridges_parts_without_area() -> None:
    parts = [_square(0, 0, 10, 10), _square(20, 0, 25, 5)]
    merged = merge_polygons(parts)
    assert len(merged) == 4 + 4 + 2  # every vertex, plus the entry vertices repeated on the way back
    assert polygon_area(merged) == pytest.approx(100 + 25)
    drawn = rasterize([[merged]], 12, 30)[0]
    assert drawn[2:8, 2:8].all() and drawn[1:4, 21:24].all() and not drawn[9:, 12:18].any()


# -------------------------------------------------------------------------------------------- readers
def test_yolo_reader(tmp_path: Path) -> None:
    _write_image(tmp_path / "images" / "train" / "a.jpg", 100, 50)
    _write_image(tmp_path / "images" / "train" / "b.png", 40, 40)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("17 0.1 0.2 0.5 0.2 0.5 0.8\n\n3 0.5 0.5 0.2 0.4\n")
    source = open_source(tmp_path)
    assert isinstance(source, YoloSegSource) and len(source) == 2 and source.name.endswith("/train")
    sample = source.load(0)
    assert sample.image.shape == (50, 100, 3) and len(sample.segments) == 2
    np.testing.assert_allclose(sample.segments[0][0], [[10, 10], [50, 10], [50, 40]], atol=1e-4)
    np.testing.assert_allclose(sample.boxes, [[10, 10, 50, 40], [40, 15, 60, 35]], atol=1e-4)  # box line -> rectangle
    assert source.load(1).boxes.shape == (0, 4)  # no label file: no instances
    assert source.annotations(0).width == 100
    with pytest.raises(InvalidInputError, match="a.txt:1"):
        parse_yolo_labels("0 0.1 0.2 0.3\n", 10, 10, "a.txt")
    with pytest.raises(InvalidInputError, match="index"):
        source.load(2)


def _coco_document() -> dict:
    solid = np.zeros((60, 80), np.uint8)
    solid[10:30, 40:70] = 1
    rle = coco_mask.encode(np.asfortranarray(solid))
    return {
        "images": [{"id": 7, "file_name": "x.jpg", "width": 80, "height": 60},
                   {"id": 9, "file_name": "y.jpg", "width": 30, "height": 20}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "iscrowd": 0, "bbox": [2, 2, 20, 30],
             "segmentation": [[2, 2, 22, 2, 22, 32, 2, 32], [1, 1, 2, 2]]},  # a 2-point polygon is ignored
            {"id": 2, "image_id": 7, "category_id": 5, "iscrowd": 0, "bbox": [40, 10, 30, 20],
             "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}},
            {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 1, "bbox": [0, 40, 80, 20],
             "segmentation": {"size": [60, 80], "counts": [40, 20] * 80}},  # uncompressed: the bottom rows
        ],
        "categories": [{"id": 1, "name": "person"}],
    }


def test_coco_reader_polygons_rle_and_crowds(tmp_path: Path) -> None:
    document = _coco_document()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(document))
    _write_image(tmp_path / "val" / "x.jpg", 80, 60)
    _write_image(tmp_path / "val" / "y.jpg", 30, 20)
    source = open_source(tmp_path)
    assert isinstance(source, CocoSource) and len(source) == 2
    sample = source.load(0)
    assert len(sample.segments) == 2  # the crowd is not a training target
    np.testing.assert_allclose(sample.boxes[0], [2, 2, 22, 32])
    np.testing.assert_allclose(sample.boxes[1], [40.5, 10.5, 69.5, 29.5])  # traced through pixel centres
    assert source.annotations(0).crowds == [document["annotations"][2]["segmentation"]]
    assert source.load(1).boxes.shape == (0, 4)
    same = open_source(tmp_path / "annotations" / "instances_val.json")
    assert same.image_path(1) == source.image_path(1)
    truth = coco_ground_truth(source)
    assert [a["iscrowd"] for a in truth["annotations"]] == [0, 0, 1]
    assert [i["id"] for i in truth["images"]] == [1, 2] and truth["categories"] == [{"id": 1, "name": "object"}]
    first, second, crowd = truth["annotations"]
    np.testing.assert_allclose(first["bbox"], [2, 2, 20, 30], atol=1)
    assert first["area"] == 600 and crowd["area"] == 80 * 20
    # The RLE instance, traced into polygons, is scored as its exact pixels again.
    assert isinstance(second["segmentation"], dict) and second["area"] == 600 and second["bbox"] == [40, 10, 30, 20]
    _evaluate_against_itself(truth)


def test_coco_reader_checks_image_size_and_folder(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(_coco_document()))
    with pytest.raises(InvalidInputError, match="image folder"):
        open_source(tmp_path)
    _write_image(tmp_path / "val" / "x.jpg", 81, 60)
    with pytest.raises(ImageReadError, match="81x60"):
        open_source(tmp_path).load(0)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InvalidInputError, match="COCO"):
        CocoSource(tmp_path / "bad.json", tmp_path / "val")


def _write_bsds(root: Path, name: str, segmentations: list[np.ndarray]) -> None:
    from scipy.io import savemat

    truth = np.empty((1, len(segmentations)), dtype=object)
    for k, labels in enumerate(segmentations):
        entry = np.empty((1, 1), dtype=[("Segmentation", object), ("Boundaries", object)])
        entry[0, 0] = (labels.astype(np.uint16), np.zeros(labels.shape, np.uint8))
        truth[0, k] = entry
    (root / "groundTruth" / "train").mkdir(parents=True, exist_ok=True)
    savemat(root / "groundTruth" / "train" / f"{name}.mat", {"groundTruth": truth})
    _write_image(root / "images" / "train" / f"{name}.jpg", labels.shape[1], labels.shape[0])


def test_bsds_reader_regions_annotators_and_small_regions(tmp_path: Path) -> None:
    first = np.ones((40, 60), np.uint16)
    first[:, 30:] = 2
    first[5:8, 5:8] = 3  # 9 pixels: too small
    second = np.ones((40, 60), np.uint16)
    second[20:, :] = 2
    second[20:, 40:] = 3
    _write_bsds(tmp_path, "1", [first, second])
    source = open_source(tmp_path)
    assert isinstance(source, BsdsSource) and len(source) == 1
    boxes = source.load(0).boxes
    np.testing.assert_allclose(boxes, [[0.5, 0.5, 29.5, 39.5], [30.5, 0.5, 59.5, 39.5]])
    every = BsdsSource(tmp_path, annotator="all")
    assert len(every) == 2 and len(every.load(1).segments) == 3 and every.image_path(1) == every.image_path(0)
    assert len(BsdsSource(tmp_path, annotator=3).load(0).segments) == 3  # index 3 of 2 -> the second
    # Regions tile the image: their rasterised masks cover every pixel once, but the small one, on top.
    masks = rasterize(every.load(1).segments, 40, 60)
    assert (masks.sum(axis=0) == 1).mean() > 0.9
    # Validation scores each region as its pixels (outer contour: region 1's small island is filled in).
    assert [a["area"] for a in coco_ground_truth(source)["annotations"]] == [30 * 40, 30 * 40]
    with pytest.raises(InvalidInputError, match="annotator"):
        BsdsSource(tmp_path, annotator=-1)


def test_bsds_annotator_drawn_per_epoch_is_deterministic_and_covers_every_annotator(tmp_path: Path) -> None:
    first = np.ones((40, 60), np.uint16)
    first[:, 30:] = 2
    second = np.ones((40, 60), np.uint16)
    second[20:, :] = 2
    second[20:, 40:] = 3
    _write_bsds(tmp_path, "1", [first, second])
    source = open_source(tmp_path, bsds_annotator="epoch")
    assert isinstance(source, BsdsSource) and len(source) == 1
    # The dataset passes its epoch on, through a ConcatSource too.
    dataset = TrainingDataset(ConcatSource([source]), 64, augment=False)
    counts = []
    for epoch in range(12):
        dataset.set_epoch(epoch)
        counts.append(len(source.load(0).segments))
        assert len(source.load(0).segments) == counts[-1] and len(dataset[0]["boxes"]) == counts[-1]
    assert set(counts) == {2, 3}  # both annotators' partitions appear
    dataset.set_epoch(3)
    assert len(source.load(0).segments) == counts[3]
    with pytest.raises(InvalidInputError, match="annotator"):
        BsdsSource(tmp_path, annotator="some")


def test_source_weights_from_specs_and_lists() -> None:
    assert split_weight("data/a:train@2.5") == ("data/a:train", 2.5)
    assert split_weight("data/a") == ("data/a", None) and split_weight("user@host") == ("user@host", None)
    with pytest.raises(InvalidInputError, match="positive"):
        split_weight("data/a@0")
    assert source_weights(["a", "b"]) is None
    assert source_weights(["a@3", "b"]) == [3.0, 1.0]
    assert source_weights(["a", "b"], [2, 1]) == [2.0, 1.0] and source_weights(["a@2", "b"], [2.0, 1.0]) == [2, 1]
    for specs, weights in ((["a", "b"], [1.0]), (["a", "b"], [1.0, -1.0]), (["a@3", "b"], [1.0, 1.0])):
        with pytest.raises(InvalidInputError):
            source_weights(specs, weights)


def test_source_weighted_sampler_shares_determinism_and_ranks() -> None:
    sampler = SourceWeightedSampler([10, 90], [1, 1], seed=5)
    drawn = np.array(list(sampler))
    assert len(drawn) == 100 and drawn.min() >= 0 and drawn.max() < 100
    share = (drawn < 10).mean()
    assert 0.35 < share < 0.65  # half the epoch from the 10-image source, against 10% uniformly
    assert list(SourceWeightedSampler([10, 90], [1, 1], seed=5)) == drawn.tolist()
    assert list(SourceWeightedSampler([10, 90], [1, 1], seed=6)) != drawn.tolist()
    ranks = [list(SourceWeightedSampler([10, 90], [1, 1], seed=5, rank=r, world=3)) for r in range(3)]
    assert [len(r) for r in ranks] == [34, 34, 34]  # equal per rank, as DDP needs
    full = SourceWeightedSampler([10, 90], [1, 1], seed=5, world=3).indices()
    assert len(full) == 102 and np.array(ranks).T.reshape(-1).tolist() == full.tolist()  # a partition of it
    heavy = np.array(list(SourceWeightedSampler([10, 90], [9, 1], seed=5)))
    assert (heavy < 10).mean() > 0.8
    with pytest.raises(InvalidInputError):
        SourceWeightedSampler([10, 0], [1, 1], seed=0)
    with pytest.raises(InvalidInputError):
        SourceWeightedSampler([10, 5], [1], seed=0)


def test_open_source_detection_and_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such"):
        open_source(tmp_path / "missing")
    with pytest.raises(InvalidInputError, match="not a known"):
        open_source(tmp_path)
    with pytest.raises(InvalidInputError, match="kind"):
        open_source(tmp_path, kind="voc")
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "val").mkdir()
    (tmp_path / "labels").mkdir()
    assert open_source(tmp_path).name.endswith("/train")  # the training split of several
    (tmp_path / "images" / "train2").mkdir()
    with pytest.raises(InvalidInputError, match="several splits"):
        open_source(tmp_path)


def test_concat_source(tmp_path: Path) -> None:
    for name in ("p", "q"):
        _write_image(tmp_path / name / "images" / f"{name}.jpg", 20, 10)
        (tmp_path / name / "labels").mkdir()
    source = ConcatSource([open_source(tmp_path / "p"), open_source(tmp_path / "q")])
    assert len(source) == 2 and source.image_path(1).name == "q.jpg" and source.image_path(-2).name == "p.jpg"
    with pytest.raises(InvalidInputError):
        source.load(2)
    with pytest.raises(InvalidInputError):
        ConcatSource([])
    with pytest.raises(InvalidInputError, match="not an InstanceSource"):
        ConcatSource([object()])


def test_open_sources_with_per_source_splits(tmp_path: Path) -> None:
    for split, name in (("train", "a"), ("val", "b")):
        _write_image(tmp_path / "p" / "images" / split / f"{name}.jpg", 20, 10)
    (tmp_path / "p" / "labels").mkdir()
    _write_image(tmp_path / "q" / "images" / "q.jpg", 20, 10)
    (tmp_path / "q" / "labels").mkdir()
    assert split_spec(f"{tmp_path / 'p'}:val") == (tmp_path / "p", "val")
    assert split_spec(tmp_path / "p") == (tmp_path / "p", None)
    assert split_spec(f"{tmp_path / 'missing'}:val") == (Path(f"{tmp_path / 'missing'}:val"), None)
    both = open_sources([f"{tmp_path / 'p'}:val", str(tmp_path / "q")])
    assert [both.image_path(i).name for i in range(len(both))] == ["b.jpg", "q.jpg"]
    assert open_sources(tmp_path / "p", split="train").image_path(0).name == "a.jpg"  # one path: no ConcatSource
    with pytest.raises(InvalidInputError, match="one or more"):
        open_sources([])
    with pytest.raises(InvalidInputError, match="non-empty"):
        open_sources([str(tmp_path / "q"), ""])
    weighted = open_sources([f"{tmp_path / 'p'}:val@2", f"{tmp_path / 'q'}@0.5"])  # weights: for the sampler
    assert [weighted.image_path(i).name for i in range(len(weighted))] == ["b.jpg", "q.jpg"]


def test_a_minimal_source_is_enough(tmp_path: Path) -> None:
    """A source with only the contract's len, name, image_path and load trains and validates."""
    from fastsam.train.data import Sample

    class Minimal:
        name = "minimal"

        def __len__(self) -> int:
            return 1

        def image_path(self, i: int) -> Path:
            return tmp_path / "m.png"

        def load(self, i: int) -> Sample:
            box = np.array([[4, 4, 20, 20]], np.float32)
            return Sample(np.zeros((32, 48, 3), np.uint8), [[_square(4, 4, 20, 20)]], box)

    assert TrainingDataset(Minimal(), 64, augment=True)[0]["masks"].shape[1:] == (16, 16)
    truth = coco_ground_truth(ConcatSource([Minimal()]))
    assert truth["images"][0]["width"] == 48 and truth["annotations"][0]["area"] == 256
    with pytest.raises(InvalidInputError, match="InstanceSource"):
        TrainingDataset([1, 2], 64, augment=True)


def _evaluate_against_itself(truth: dict) -> None:
    """The ground truth, scored as detections of itself, must give AP 1: the document is valid COCO."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = truth
        gt.createIndex()
        detections = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0,
                       "segmentation": a["segmentation"]} for a in truth["annotations"] if not a["iscrowd"]]
        evaluation = COCOeval(gt, gt.loadRes(detections), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[1] == pytest.approx(1.0)


# --------------------------------------------------------------------------------- dataset and collate
def test_dataset_items_and_collate(tmp_path: Path) -> None:
    _write_image(tmp_path / "images" / "a.jpg", 100, 50)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.1 0.2 0.5 0.2 0.5 0.8 0.1 0.8\n0 0.6 0.2 0.9 0.2 0.9 0.6\n")
    _write_image(tmp_path / "images" / "b.jpg", 30, 60)
    dataset = TrainingDataset(open_source(tmp_path), 64, augment=False, mask_ratio=4)
    item = dataset[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 64, 64)
    assert item["masks"].dtype == torch.uint8 and item["masks"].shape == (2, 16, 16)
    # 100x50 -> 64x32 letterboxed with 16 rows on top: the first box is [6.4, 22.4, 32, 41.6].
    np.testing.assert_allclose(item["boxes"][0].numpy(), [6.4, 16 + 6.4, 32, 16 + 25.6], atol=1e-4)
    batch = collate_batch([dataset[0], dataset[1], dataset[0]])
    assert batch["images"].shape == (3, 3, 64, 64) and batch["images"].dtype == torch.float32
    assert float(batch["images"].max()) <= 1.0 and abs(float(batch["images"][0, 0, 32, 32]) - 90 / 255) < 0.02
    assert batch["batch_idx"].tolist() == [0, 0, 2, 2]
    assert batch["boxes"].shape == (4, 4) and batch["masks"].shape == (4, 16, 16)
    assert batch["masks"].dtype == torch.float32
    for bad in (dict(imgsz=100), dict(imgsz=64, mask_ratio=3), dict(imgsz=0), dict(imgsz=64, seed=-1)):
        with pytest.raises(InvalidInputError):
            TrainingDataset(open_source(tmp_path), augment=True, **bad)
    with pytest.raises(InvalidInputError):
        collate_batch([])
    with pytest.raises(InvalidInputError):
        dataset.set_epoch(-1)


def test_cache_gives_the_same_items(tmp_path: Path) -> None:
    _write_image(tmp_path / "images" / "a.jpg", 100, 50)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.1 0.2 0.5 0.2 0.5 0.8 0.1 0.8\n")
    plain = TrainingDataset(open_source(tmp_path), 64, augment=True, seed=1)
    cached = TrainingDataset(open_source(tmp_path), 64, augment=True, seed=1, cache=True)
    cached.preload()
    for _ in range(2):
        a, b = plain[0], cached[0]
        assert all(torch.equal(a[key], b[key]) for key in a)
    with pytest.raises(InvalidInputError, match="cache=True"):
        plain.preload()


# ------------------------------------------------------------------------------------------ real data
def _real(path: str) -> Path:
    root = DATA / path
    if not root.exists():
        pytest.skip(f"{root} not present")
    return root


def test_coco128_seg() -> None:
    source = open_source(_real("coco128-seg"))
    assert isinstance(source, YoloSegSource) and len(source) == 128
    # The README's 941 lines include two label files without images; Ultralytics validates on 929.
    assert sum(len(source.load(i).segments) for i in range(len(source))) == 929
    dataset = TrainingDataset(source, 512, augment=True)
    start = time.perf_counter()
    for i in range(8):
        item = dataset[i]
        assert item["image"].shape == (3, 512, 512) and item["masks"].shape[1:] == (128, 128)
        assert len(item["boxes"]) == len(item["masks"])
    assert (time.perf_counter() - start) / 8 < 0.5  # ~20 ms per item on an idle core


def test_tiny_coco_val_ground_truth() -> None:
    source = open_source(_real("tiny_coco/tiny_coco"), split="val2017")
    assert isinstance(source, CocoSource) and len(source) == 50
    truth = coco_ground_truth(source)
    assert len(truth["images"]) == 50
    assert sum(a["iscrowd"] for a in truth["annotations"]) == 5 and len(truth["annotations"]) == 382
    sample = source.load(0)
    assert sample.image.shape[:2] == (truth["images"][0]["height"], truth["images"][0]["width"])
    _evaluate_against_itself(truth)


def test_bsds500() -> None:
    source = open_source(_real("bsds500"), split="val")
    assert isinstance(source, BsdsSource) and len(source) == 100
    sample = source.load(0)
    assert sample.image.shape in ((321, 481, 3), (481, 321, 3)) and len(sample.segments) >= 2
    masks = rasterize(sample.segments, *sample.image.shape[:2])
    assert (masks.sum(axis=0) >= 1).mean() > 0.9  # the regions cover the image


def test_camvid_rle_regions_load_and_stay_aligned_through_augmentation() -> None:
    """CamVid's COCO RLE regions read through the COCO reader: each instance, filled from its traced outline,
    is its RLE mask with holes filled, and a flip moves the masks with the pixels."""
    from scipy.ndimage import binary_fill_holes

    source = open_sources(f"{_real('camvid')}:train")
    assert isinstance(source, CocoSource) and len(source) == 367
    record = source._images[0]
    rles = [a["segmentation"] for a in source._by_image[record["id"]]]
    height, width = record["height"], record["width"]
    plain = TrainingDataset(source, max(height, width), augment=False, mask_ratio=1)
    item = plain[0]
    top = (max(height, width) - height) // 2
    masks = item["masks"].numpy()[:, top:top + height, :width].astype(bool)
    assert len(masks) == len(rles) >= 20
    for mask, rle in zip(masks, rles):
        expected = binary_fill_holes(coco_mask.decode(rle).astype(bool))
        assert (mask == expected).mean() > 0.995
    flipped = TrainingDataset(source, max(height, width), augment=True, mask_ratio=1,
                              hyp=AugmentConfig(hsv_h=0, hsv_s=0, hsv_v=0, translate=0, scale=0, mosaic=0, fliplr=1))
    turned = flipped[0]
    assert torch.equal(turned["image"], item["image"].flip(-1))
    assert len(turned["masks"]) == len(item["masks"])
    agreement = (turned["masks"].numpy() == item["masks"].numpy()[:, :, ::-1]).mean()
    assert agreement > 0.999
