"""Bad input gets a clear, specific error; odd but valid images are accepted."""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
from PIL import Image, ImageOps

from fastsam.errors import ImageReadError, InvalidInputError
from fastsam.inference.letterbox import apply_letterbox, plan_letterbox
from fastsam.io.image import load_image
from fastsam.inference.predictor import check_settings
from fastsam.result import SegmentationResult
from fastsam.rle import RunLengthMask


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.fixture
def rgb_image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------------------------- image files
def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        load_image(tmp_path / "empty.jpg")


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageReadError, match="directory"):
        load_image(tmp_path)


def test_non_image_file(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is text, not a JPEG")
    with pytest.raises(ImageReadError, match="not a recognised image"):
        load_image(tmp_path / "notes.jpg")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path, rgb_image, fmt):
    data = io.BytesIO()
    rgb_image.resize((400, 300)).save(data, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        load_image(path)


def tiff_with_rational_strip_offsets() -> bytes:
    """The issue's 332-byte TIFF: an 8x8 RGB TIFF whose StripOffsets entry is retyped as a RATIONAL. Pillow opens
    it, then raises TypeError in load()."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (100, 100, 100)).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * entries, 12):
        if struct.unpack_from("<H", data, entry)[0] == 273:  # StripOffsets: type 5 (RATIONAL), 1 value, at byte 8
            struct.pack_into("<HHII", data, entry, 273, 5, 1, 8)
    return bytes(data)


def test_decoder_exception_becomes_image_error(tmp_path):
    data = tiff_with_rational_strip_offsets()
    assert len(data) == 332
    with pytest.raises(TypeError):  # what Pillow itself does with it
        Image.open(io.BytesIO(data)).load()
    with pytest.raises(ImageReadError, match="corrupt.*TypeError"):
        load_image(data)
    (tmp_path / "bad.tif").write_bytes(data)
    with pytest.raises(ImageReadError, match="bad.tif"):
        load_image(tmp_path / "bad.tif")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user that file modes restrict")
def test_unreadable_file(tmp_path, rgb_image):
    path = _save(rgb_image, tmp_path / "secret.png")
    path.chmod(0)
    with pytest.raises(ImageReadError, match="cannot read"):
        load_image(path)


@pytest.mark.parametrize("height, width", [(2, 5000), (5000, 2), (1, 20000), (20000, 1)])
def test_very_thin_images_keep_a_pixel_per_side(height, width):
    box = plan_letterbox((height, width), 1024)
    assert min(box.resized_size) == 1 and max(box.resized_size) == 1024
    assert all(side % 32 == 0 for side in box.input_size)
    padded = apply_letterbox(np.zeros((height, width, 3), np.uint8), box)
    assert padded.shape == (*box.input_size, 3)


def test_pixel_limit_checked_before_decoding(tmp_path):
    path = _save(Image.new("RGB", (500, 400)), tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="above the limit"):
        load_image(path, max_pixels=100_000)
    assert load_image(path, max_pixels=200_000).shape == (400, 500, 3)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "1", "CMYK"])
def test_modes_become_rgb(tmp_path, rgb_image, mode):
    image = rgb_image.convert(mode)
    path = _save(image, tmp_path / ("x.tif" if mode == "CMYK" else "x.png"))
    out = load_image(path)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    if mode in ("RGBA",):
        np.testing.assert_array_equal(out, np.asarray(rgb_image))
    if mode == "L":
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_sixteen_bit_png_is_rescaled(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16).repeat(5, 0)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    out = load_image(path)
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 255])


def test_exif_orientation_is_applied(tmp_path, rgb_image):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: displayed turned 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    rgb_image.save(path, exif=exif.tobytes(), quality=95)
    assert load_image(path).shape == (60, 40, 3)


def _pil_reference(path) -> np.ndarray:
    """What PIL alone makes of a file: decoded, EXIF orientation applied, RGB."""
    image = Image.open(path)
    image.load()
    return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_fast_path_matches_pil_in_every_orientation(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    picture = Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8))  # odd sizes: no symmetric luck
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    picture.save(path, exif=exif.tobytes(), quality=90)
    out = load_image(path)
    assert out.flags["C_CONTIGUOUS"] and out.dtype == np.uint8
    np.testing.assert_array_equal(out, _pil_reference(path))
    np.testing.assert_array_equal(load_image(path.read_bytes()), out)


@pytest.mark.parametrize("variant", ["grey", "progressive", "cmyk", "trailing_zeros", "appended_data"])
def test_jpeg_variants_match_pil(tmp_path, rgb_image, variant):
    path = tmp_path / f"{variant}.jpg"
    image = {"grey": rgb_image.convert("L"), "cmyk": rgb_image.convert("CMYK")}.get(variant, rgb_image)
    image.resize((130, 90)).save(path, quality=85, progressive=variant == "progressive")
    if variant in ("trailing_zeros", "appended_data"):
        path.write_bytes(path.read_bytes() + (bytes(300) if variant == "trailing_zeros" else b"vendor trailer"))
    np.testing.assert_array_equal(load_image(path), _pil_reference(path))


def test_jpeg_cut_just_before_its_end_marker_is_refused(tmp_path, rgb_image):
    buffer = io.BytesIO()
    rgb_image.resize((400, 300)).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:-2])  # no end marker: the fast path defers to PIL, which refuses it
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        load_image(path)


def test_arrays_and_pil_images(rgb_image):
    array = np.asarray(rgb_image)
    np.testing.assert_array_equal(load_image(array), array)
    np.testing.assert_array_equal(load_image(rgb_image), array)
    assert load_image(array[..., 0]).shape == (40, 60, 3)
    assert load_image(array.astype(np.float32) / 255).dtype == np.uint8
    with pytest.raises(InvalidInputError):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InvalidInputError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(InvalidInputError):
        load_image(12345)


# ------------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize("kwargs,match", [
    ({"imgsz": 1000}, "multiple of 32"),
    ({"imgsz": 0}, "imgsz"),
    ({"conf": 1.5}, "conf"),
    ({"iou": -0.1}, "iou"),
    ({"max_det": 0}, "max_det"),
])
def test_bad_settings(kwargs, match):
    settings = {"imgsz": 1024, "conf": 0.4, "iou": 0.9, "max_det": 300, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        check_settings(**settings)


# -------------------------------------------------------------------------------------------------- prompts
def _result(masks: list[np.ndarray]) -> SegmentationResult:
    h, w = masks[0].shape if masks else (30, 40)
    rles = [RunLengthMask.from_mask(m) for m in masks]
    boxes = np.array([r.bbox() for r in rles], np.float32).reshape(-1, 4)
    return SegmentationResult((h, w), boxes, np.linspace(0.9, 0.5, len(masks), dtype=np.float32), rles)


@pytest.fixture
def nested() -> SegmentationResult:
    big = np.zeros((30, 40), bool)
    big[2:28, 2:28] = True
    small = np.zeros((30, 40), bool)
    small[10:20, 10:20] = True
    other = np.zeros((30, 40), bool)
    other[22:27, 30:36] = True
    return _result([big, small, other])


@pytest.mark.parametrize("points,labels,match", [
    ([[40, 5]], [1], "outside"),
    ([[-1, 5]], [1], "outside"),
    ([[5, 30]], [1], "outside"),
    ([[5, 5], [6, 6]], [1], "labels"),
    ([[5, 5]], [2], "1 \\(foreground\\) or 0"),
    ([], None, "empty"),
    ([[5, 5, 5]], [1], "shape"),
    ([[float("nan"), 5]], [1], "NaN"),
    ("abc", None, "numbers"),
])
def test_bad_points(nested, points, labels, match):
    with pytest.raises(InvalidInputError, match=match):
        nested.prompt(points=points, labels=labels)


@pytest.mark.parametrize("boxes,match", [
    ([[10, 10, 10, 20]], "empty or inverted"),
    ([[20, 10, 10, 20]], "empty or inverted"),
    ([[50, 40, 60, 50]], "outside"),
    ([[1, 2, 3]], "shape"),
    ([], "empty"),
])
def test_bad_boxes(nested, boxes, match):
    with pytest.raises(InvalidInputError, match=match):
        nested.prompt(boxes=boxes)


def test_prompt_needs_something(nested):
    with pytest.raises(InvalidInputError, match="points and/or boxes"):
        nested.prompt()
    with pytest.raises(InvalidInputError, match="labels"):
        nested.prompt(labels=[1])


def test_merge_rule_largest_first(nested):
    # Instances are visited largest first; within one, the last point inside it decides add or erase.
    fg = nested.prompt(points=[[15, 15]], labels=[1]).masks[0].decode()
    assert fg.sum() == nested.areas[0]  # big then small added: their union is big
    both = nested.prompt(points=[[15, 15], [15, 15]], labels=[1, 0]).masks[0].decode()
    assert both.sum() == 0
    # Background first, foreground last: big is added (its last point is foreground), then small erased.
    carved = nested.prompt(points=[[15, 15], [5, 5]], labels=[0, 1]).masks[0].decode()
    assert carved.sum() == nested.areas[0] - nested.areas[1]
    assert not carved[15, 15] and carved[5, 5]
    # Foreground first, background last: the background point lies in big too, so big is erased as well.
    erased = nested.prompt(points=[[5, 5], [15, 15]], labels=[1, 0]).masks[0].decode()
    assert erased.sum() == 0


def test_per_point_gives_smallest_instance(nested):
    selection = nested.prompt(points=[[15, 15], [5, 5], [1, 1]], labels=[1, 1, 1], per_point=True)
    assert selection.instance_ids == [1, 0, None]
    assert selection.masks[2].area == 0


def test_per_point_avoids_instances_holding_background(nested):
    selection = nested.prompt(points=[[15, 15], [5, 5]], labels=[1, 0], per_point=True)
    # Both the big and the small square hold the foreground point; the big one also holds the background point.
    assert selection.instance_ids == [1]


def test_box_prompt_best_iou_and_combination(nested):
    selection = nested.prompt(boxes=[[10, 10, 20, 20], [2, 2, 38, 28]], points=[[33, 24]])
    assert selection.instance_ids == [1, 0, None]
    assert selection.prompts == ["box 0", "box 1", "points"]
    np.testing.assert_array_equal(selection.masks[2].decode(), nested.mask(2))


def test_no_detections_gives_empty_result_and_empty_answers():
    empty = _result([])
    assert len(empty) == 0 and empty.masks.shape == (0, 30, 40)
    assert len(empty.everything()) == 0
    assert len(empty.prompt(boxes=[[1, 1, 5, 5]])) == 0
    merged = empty.prompt(points=[[3, 3]])
    assert len(merged) == 1 and merged.masks[0].area == 0
