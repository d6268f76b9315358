"""Reading images from files, bytes, arrays or PIL images into RGB uint8 arrays, with clear errors."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fastsam.errors import ImageReadError, InvalidInputError

ImageSource = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]

#: Largest image accepted, in pixels (about 8000 x 8000). Override with FASTSAM_MAX_PIXELS or ``max_pixels``.
DEFAULT_MAX_PIXELS = int(os.environ.get("FASTSAM_MAX_PIXELS", 64_000_000))

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm"}


def _check_pixels(width: int, height: int, max_pixels: int, name: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageReadError(
            f"{name}: image is {width}x{height} = {width * height / 1e6:.1f} MP, above the limit of "
            f"{max_pixels / 1e6:.1f} MP; downscale it or raise the limit (max_pixels / FASTSAM_MAX_PIXELS)"
        )


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> (h, w, 3) uint8 RGB. Alpha is dropped (as OpenCV's reader does); 16-bit and float
    data are rescaled to 8 bits rather than clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        data = np.asarray(image).astype(np.float64)
        if image.mode == "F":
            top = 1.0 if data.size and np.nanmax(data) <= 1.0 else 255.0
        elif image.mode == "I" and data.size and data.max() <= 255:
            top = 255.0
        else:
            top = 65535.0
        gray = np.clip(np.nan_to_num(data) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


#: EXIF orientation -> the numpy view that undoes it on an (H, W, C) array (as ``ImageOps.exif_transpose``).
_ORIENTATION_VIEWS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 3),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
_JPEG_END = b"\xff\xd9"


def _decode_jpeg(image: Image.Image, data: bytes) -> np.ndarray | None:
    """A complete baseline/progressive RGB or grey JPEG decoded by OpenCV straight into an array (PIL's array
    conversion copies twice: 1.7x faster on a 3.4 MP photo; the same libjpeg-turbo, identical pixels), EXIF
    orientation applied from PIL's parse of the header. None where PIL must decide: other formats and modes (CMYK, YCCK),
    files without their end marker (truncated: PIL raises), anything OpenCV declines or sizes differently."""
    if image.format != "JPEG" or image.mode not in ("RGB", "L") or not data[-64:].rstrip(b"\x00").endswith(_JPEG_END):
        return None
    try:
        orientation = int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a corrupt EXIF block: let PIL's path report or ignore it as it does
        return None
    if orientation not in (1, *_ORIENTATION_VIEWS):
        return None
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if bgr is None or bgr.shape[:2] != (image.height, image.width):
        return None
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)
    if orientation == 1:
        return rgb
    return np.ascontiguousarray(_ORIENTATION_VIEWS[orientation](rgb))


def _from_array(array: np.ndarray, max_pixels: int) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InvalidInputError(f"image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {array.shape}")
    _check_pixels(array.shape[1], array.shape[0], max_pixels, "array")
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.uint16:
        array = (array.astype(np.uint32) * 255 + 32767) // 65535
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InvalidInputError("image array contains NaN or infinite values")
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        array = np.clip(array * scale + 0.5, 0, 255)
    else:
        raise InvalidInputError(f"unsupported image array dtype {array.dtype}; use uint8, uint16 or float")
    array = array.astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load an image as (H, W, 3) uint8 RGB, EXIF orientation applied.

    Accepts a path, encoded bytes, a numpy array (RGB order; grayscale, RGBA, uint16 and float accepted) or a
    PIL image. Raises :class:`ImageReadError` for missing, unreadable, empty, truncated, non-image or
    too-large files, and for any other failure of the decoder on the file's bytes.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, max_pixels, "image")
        return _to_rgb8(ImageOps.exif_transpose(source))
    if isinstance(source, (bytes, bytearray)):
        name, data = "image bytes", bytes(source)
        if not source:
            raise ImageReadError("image bytes are empty")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = str(path)
        if not path.exists():
            raise ImageReadError(f"{name}: no such file")
        if path.is_dir():
            raise ImageReadError(f"{name}: is a directory, not an image")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageReadError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc
        if not data:
            raise ImageReadError(f"{name}: file is empty")
    else:
        raise InvalidInputError(f"cannot read an image from {type(source).__name__}; give a path, bytes, array or PIL image")
    try:
        with warnings.catch_warnings():
            # fastsam applies its own pixel limit below; PIL's warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_pixels(image.width, image.height, max_pixels, name)
            decoded = _decode_jpeg(image, data)
            if decoded is not None:
                return decoded
            image.load()
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{name}: not a recognised image file") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{name}: image too large ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - decoders raise anything (TypeError, struct.error...) on bad files
        raise ImageReadError(f"{name}: image file is truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    try:
        ImageOps.exif_transpose(image, in_place=True)  # the image is ours: no copy
        return _to_rgb8(image)
    except Exception as exc:  # noqa: BLE001 - as above: a corrupt EXIF block or pixel buffer is a bad file
        raise ImageReadError(f"{name}: cannot convert image to RGB ({type(exc).__name__}: {exc})") from exc
