"""Exporters: COCO RLE JSON, instance PNGs, label maps and polygons, on hand-made masks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fastsam.errors import InvalidInputError
from fastsam.io import export
from fastsam.prompts.selection import Selection
from fastsam.result import SegmentationResult
from fastsam.rle import RunLengthMask

H, W = 40, 60


def _rect(x1: int, y1: int, x2: int, y2: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(size, bool)
    mask[y1:y2, x1:x2] = True
    return mask


def _masks() -> list[np.ndarray]:
    big = _rect(5, 4, 45, 30)  # 40 x 26
    small = _rect(20, 10, 30, 18)  # 10 x 8, inside big
    ring = _rect(2, 32, 20, 40)
    ring[34:38, 6:12] = False  # hole; touches the bottom edge of the image
    return [big, small, ring]


def _selection(masks: list[np.ndarray] | None = None) -> Selection:
    selection = Selection((H, W))
    for k, mask in enumerate(_masks() if masks is None else masks):
        selection.add(RunLengthMask.from_mask(mask), k + 10, f"box {k}", 0.9 - 0.1 * k)
    return selection


def _result(masks: list[np.ndarray]) -> SegmentationResult:
    rles = [RunLengthMask.from_mask(m) for m in masks]
    boxes = np.array([r.bbox() for r in rles], np.float32)
    return SegmentationResult((H, W), boxes, np.linspace(0.9, 0.5, len(rles)).astype(np.float32), rles,
                              source="/data/photo.jpg")


# ------------------------------------------------------------------------------------------------ COCO
def test_coco_rle_round_trips_through_pycocotools(tmp_path: Path) -> None:
    masks = _masks()
    path = export.write_coco_json(_selection(masks), tmp_path / "out" / "coco.json", file_name="photo.jpg")
    document = json.loads(path.read_text())
    assert document["images"] == [{"id": 1, "file_name": "photo.jpg", "height": H, "width": W}]
    assert document["categories"] == [{"id": 1, "name": "object"}]
    assert len(document["annotations"]) == len(masks)
    for mask, annotation in zip(masks, document["annotations"]):
        rle = annotation["segmentation"]
        assert isinstance(rle["counts"], str)
        decoded = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
        assert decoded.shape == (H, W)
        np.testing.assert_array_equal(decoded.astype(bool), mask)
        assert int(coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")})) == annotation["area"]


def test_coco_file_text_is_json_dumps_of_the_document(tmp_path: Path) -> None:
    # Counts strings are spliced into the file rather than encoded by json: the text must still be exactly
    # json.dumps of the document, including counts with backslashes and prompts that look like counts.
    rng = np.random.default_rng(5)
    masks = [rng.random((H, W)) < 0.5 for _ in range(6)] + _masks() + [np.zeros((H, W), bool)]
    selection = Selection((H, W))
    for k, mask in enumerate(masks):
        selection.add(RunLengthMask.from_mask(mask), k, 'text "counts": "" \\ ' + str(k), 0.5)
    document = export.coco_document(selection, 'a "quoted" \\ name.png')
    assert any("\\" in a["segmentation"]["counts"] for a in document["annotations"])
    path = export.write_coco_json(selection, tmp_path / "coco.json", file_name='a "quoted" \\ name.png')
    assert path.read_text() == json.dumps(document)


def test_parallel_encoding_gives_the_serial_annotations(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    selection = _selection([rng.random((H, W)) < 0.5 for _ in range(9)] + _masks())
    serial = export.to_coco_annotations(selection)
    for annotation, mask in zip(serial, selection.masks):  # the batched fields are each mask's own
        x1, y1, x2, y2 = mask.bbox()
        assert annotation["segmentation"] == mask.to_coco() and annotation["area"] == mask.area
        assert annotation["bbox"] == [x1, y1, x2 - x1, y2 - y1]
    monkeypatch.setattr(export, "PARALLEL_RUNS", 0)  # every selection counts as large
    monkeypatch.setattr(export.os, "cpu_count", lambda: 3)
    assert export.to_coco_annotations(selection) == serial
    assert export.to_coco_annotations(Selection((H, W))) == []


def test_coco_annotation_fields_on_hand_made_masks() -> None:
    annotations = export.to_coco_annotations(_selection(), image_id=7, category_id=3, start_id=100)
    assert [a["id"] for a in annotations] == [100, 101, 102]
    assert all(a["image_id"] == 7 and a["category_id"] == 3 and a["iscrowd"] == 0 for a in annotations)
    assert [a["area"] for a in annotations] == [40 * 26, 10 * 8, 18 * 8 - 6 * 4]
    assert all(isinstance(a["area"], int) for a in annotations)
    assert [a["bbox"] for a in annotations] == [[5.0, 4.0, 40.0, 26.0], [20.0, 10.0, 10.0, 8.0], [2.0, 32.0, 18.0, 8.0]]
    assert all(isinstance(v, float) for a in annotations for v in a["bbox"])
    assert [a["instance_id"] for a in annotations] == [10, 11, 12]
    assert [a["prompt"] for a in annotations] == ["box 0", "box 1", "box 2"]
    assert [a["score"] for a in annotations] == pytest.approx([0.9, 0.8, 0.7])
    # pycocotools agrees on the box.
    for annotation in annotations:
        rle = dict(annotation["segmentation"], counts=annotation["segmentation"]["counts"].encode("ascii"))
        assert coco_mask.toBbox(rle).tolist() == annotation["bbox"]


def test_coco_from_segmentation_result_uses_everything_and_source_name(tmp_path: Path) -> None:
    result = _result(_masks())
    path = export.write_coco_json(result, tmp_path / "r.json")
    document = json.loads(path.read_text())
    assert document["images"][0]["file_name"] == "photo.jpg"
    assert [a["prompt"] for a in document["annotations"]] == ["everything"] * 3
    assert [a["instance_id"] for a in document["annotations"]] == [0, 1, 2]


def test_merged_mask_has_null_instance_id_and_empty_mask_is_valid() -> None:
    selection = Selection((H, W))
    selection.add(RunLengthMask.from_mask(_rect(1, 1, 4, 4)), None, "points", 0.5)
    selection.add(RunLengthMask.empty(H, W), 3, "box 0", 0.1)
    annotations = export.to_coco_annotations(selection)
    assert annotations[0]["instance_id"] is None
    assert annotations[1]["area"] == 0 and annotations[1]["bbox"] == [0.0, 0.0, 0.0, 0.0]
    json.dumps(annotations)  # serialisable as is


def test_empty_selection_gives_document_without_annotations() -> None:
    document = export.coco_document(Selection((H, W)), "x.png", image_id=4)
    assert document["annotations"] == []
    assert document["images"][0]["id"] == 4


def test_atomic_write_leaves_no_temp_files_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "coco.json"
    export.write_coco_json(_selection(), target, file_name="x.png")
    export.write_coco_json(_selection(_masks()[:1]), target, file_name="x.png")  # overwrite
    assert sorted(p.name for p in target.parent.iterdir()) == ["coco.json"]
    assert len(json.loads(target.read_text())["annotations"]) == 1


def test_failed_write_leaves_no_temp_file_and_keeps_old(tmp_path: Path) -> None:
    target = tmp_path / "scores.json"
    export.write_coco_json(_selection(), target, file_name="x.png")
    before = target.read_bytes()
    bad = _selection()
    bad.scores[0] = float("nan")
    with pytest.raises(InvalidInputError):
        export.write_coco_json(bad, target, file_name="x.png")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]


# ------------------------------------------------------------------------------------------ raster files
def test_instance_pngs_round_trip(tmp_path: Path) -> None:
    masks = _masks()
    paths = export.write_instance_pngs(_selection(masks), tmp_path / "inst", "photo")
    assert [p.name for p in paths] == ["photo_000.png", "photo_001.png", "photo_002.png"]
    for path, mask in zip(paths, masks):
        read = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert read.dtype == np.uint8 and read.shape == (H, W)
        assert set(np.unique(read).tolist()) <= {0, 255}
        np.testing.assert_array_equal(read == 255, mask)


def test_label_map_paints_small_masks_on_top() -> None:
    masks = _masks()
    # Small first in the selection: order of painting must come from areas, not selection order.
    selection = _selection([masks[1], masks[0], masks[2]])
    labels = export.label_map(selection)
    assert labels.dtype == np.uint16 and labels.shape == (H, W)
    assert labels[14, 25] == 1  # small mask, inside the big one
    assert labels[5, 6] == 2  # big mask only
    assert labels[33, 3] == 3
    assert labels[36, 8] == 0  # the ring's hole
    assert labels[0, 0] == 0
    assert (labels == 1).sum() == masks[1].sum()
    assert (labels == 2).sum() == masks[0].sum() - masks[1].sum()


def test_label_map_ties_keep_selection_order() -> None:
    a, b = _rect(0, 0, 10, 10), _rect(5, 5, 15, 15)  # same area
    labels = export.label_map(_selection([a, b]))
    assert labels[7, 7] == 2  # painted after mask 1, so on top
    labels = export.label_map(_selection([b, a]))
    assert labels[7, 7] == 2


def test_label_map_png_8_and_16_bit(tmp_path: Path) -> None:
    selection = _selection()
    path = export.write_label_map_png(selection, tmp_path / "labels.png")
    read = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, export.label_map(selection))

    many = Selection((20, 20))
    for k in range(300):
        mask = np.zeros((20, 20), bool)
        mask.flat[k] = True
        many.add(RunLengthMask.from_mask(mask), k, "everything", 1.0)
    path = export.write_label_map_png(many, tmp_path / "many.png")
    read = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert read.dtype == np.uint16
    assert read.max() == 300
    np.testing.assert_array_equal(read, export.label_map(many))


# ---------------------------------------------------------------------------------------------- polygons
def test_polygon_of_filled_rectangle_is_its_corners() -> None:
    polygons = export.mask_polygons(_rect(3, 2, 8, 6))
    assert len(polygons) == 1
    corners = {tuple(p) for p in np.array(polygons[0]).reshape(-1, 2).tolist()}
    # Pixel centres of the corner pixels: x in {3, 7}, y in {2, 5}.
    assert corners == {(3.0, 2.0), (3.0, 5.0), (7.0, 5.0), (7.0, 2.0)}


def test_polygons_drop_tiny_contours_and_keep_outer_only() -> None:
    mask = _masks()[2]  # ring with a hole: one outer contour
    assert len(export.mask_polygons(mask)) == 1
    mask = np.zeros((10, 10), bool)
    mask[1, 1] = True  # one pixel: fewer than 3 points
    mask[1, 5:7] = True  # two pixels: 2 points
    mask[4:9, 4:9] = True
    polygons = export.mask_polygons(mask)
    assert len(polygons) == 1
    assert export.mask_polygons(mask, min_area=100.0) == []
    assert export.mask_polygons(np.zeros((5, 5), bool)) == []


def test_polygon_annotations_match_full_mask_polygons(tmp_path: Path) -> None:
    masks = _masks()
    annotations = export.to_polygon_annotations(_selection(masks))
    for mask, annotation in zip(masks, annotations):
        assert annotation["polygons"] == export.mask_polygons(mask)  # the crop offset is applied
        assert annotation["area"] == int(mask.sum())
    path = export.write_polygons_json(_selection(masks), tmp_path / "p" / "poly.json")
    document = json.loads(path.read_text())
    assert document["height"] == H and document["width"] == W
    assert document["annotations"] == annotations


# ------------------------------------------------------------------------------------------------- errors
def test_bad_inputs_raise_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        export.to_coco_annotations([RunLengthMask.from_mask(_rect(0, 0, 2, 2))])
    with pytest.raises(InvalidInputError):
        export.label_map(np.zeros((H, W), bool))
    with pytest.raises(InvalidInputError):
        export.to_coco_annotations(_selection(), image_id="1")
    with pytest.raises(InvalidInputError):
        export.coco_document(_selection(), "")
    with pytest.raises(InvalidInputError):
        export.write_coco_json(_selection(), tmp_path)  # a folder
    with pytest.raises(InvalidInputError):
        export.write_coco_json(_selection(), 42)
    with pytest.raises(InvalidInputError):
        export.write_label_map_png(_selection(), tmp_path / "labels.jpg")
    with pytest.raises(InvalidInputError):
        export.write_instance_pngs(_selection(), tmp_path / "x", "a/b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError):
        export.write_instance_pngs(_selection(), tmp_path / "file", "a")
    with pytest.raises(InvalidInputError):
        export.write_coco_json(_selection(), tmp_path / "file" / "c.json", file_name="x.png")
    with pytest.raises(InvalidInputError):
        export.mask_polygons(np.zeros((2, 3, 4), bool))
    with pytest.raises(InvalidInputError):
        export.mask_polygons(np.zeros((4, 4), bool), min_area=-1)
    mismatched = Selection((H, W))
    mismatched.add(RunLengthMask.from_mask(np.ones((H + 1, W), bool)), 0, "everything", 1.0)
    with pytest.raises(InvalidInputError):
        export.to_coco_annotations(mismatched)


# ------------------------------------------------------------------------------------------ atomic writes
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_exported_and_batch_files_get_0666_less_umask(tmp_path: Path) -> None:
    from fastsam.batch.shards import OutputFolder

    expected = 0o666 & ~_umask()
    written = [export.write_coco_json(_selection(), tmp_path / "coco.json", file_name="x.png"),
               export.write_label_map_png(_selection(), tmp_path / "labels.png"),
               *export.write_instance_pngs(_selection(), tmp_path / "pngs", "x")]
    out = OutputFolder(tmp_path / "batch")
    out.create()
    writer = out.writer(0)
    writer.add('{"file": "a"}', False)
    writer.add('{"file": "b", "error": "X"}', True)
    writer.commit()
    out.write_manifest({"identity": {}})
    written += [out.shard_path(0), out.errors_path(0), out.manifest_path]
    assert {path.stat().st_mode & 0o777 for path in written} == {expected}


@pytest.mark.parametrize("failing", ["mkstemp", "replace", "mkdir"])
def test_file_system_refusal_is_an_output_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      failing: str) -> None:
    import errno
    import tempfile

    from fastsam.errors import OutputWriteError
    from fastsam.io import atomic

    def refuse(*_args, **_kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    target = tmp_path / "sub" / "coco.json"
    if failing == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    elif failing == "replace":
        monkeypatch.setattr(atomic.os, "replace", refuse)
    else:
        monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(OutputWriteError, match="Read-only file system") as caught:
        export.write_coco_json(_selection(), target, file_name="x.png")
    assert isinstance(caught.value, OSError)  # callers that catch OSError keep working
    assert not target.exists()
    assert not (tmp_path / "sub").exists() or list((tmp_path / "sub").iterdir()) == []  # no temporary file left
