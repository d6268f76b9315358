"""Reading an uploaded image from a request: size limit while streaming, content type, and a cheap header check
(format and pixel count) before any worker time is spent on it."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError
from starlette.requests import Request

from fastsam.errors import ImageReadError
from fastsam.serve.errors import PayloadTooLargeError, UnsupportedMediaTypeError

#: Formats a browser or labelling tool sends; PIL reads each of them.
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM"}
RAW_TYPES = {"application/octet-stream"}


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The request body, refusing (413) as soon as it exceeds ``max_bytes``, whatever Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"upload of {int(declared)} bytes is above the limit of {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(f"upload is above the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _file_from_form(request: Request, body: bytes, max_bytes: int) -> bytes:
    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UnsupportedMediaTypeError("multipart upload needs the image in a file field named 'file'")
        return await upload.read(max_bytes + 1)
    finally:
        await form.close()


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """Image bytes from a raw body (Content-Type image/* or application/octet-stream) or from the ``file`` field
    of multipart/form-data. Raises 413 / 415 errors for oversized or non-image uploads."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (content_type.startswith("image/") or content_type in RAW_TYPES or content_type == "multipart/form-data"):
        raise UnsupportedMediaTypeError(f"content type {content_type or '(none)'!r} is not an image; send the image "
                                        f"bytes as image/* or application/octet-stream, or as multipart field 'file'")
    body = await read_limited(request, max_bytes)
    data = await _file_from_form(request, body, max_bytes) if content_type == "multipart/form-data" else body
    if not data:
        raise ImageReadError("the upload is empty; send the image bytes")
    return data


def check_image_header(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height) from the image header, without decoding the pixels.

    Raises :class:`ImageReadError` when the bytes are not an image of an accepted format, and
    :class:`PayloadTooLargeError` when the image has more than ``max_pixels`` pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind, width, height = image.format or "", int(image.width), int(image.height)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"the upload is not a readable image ({exc})") from exc
    if kind not in ACCEPTED_FORMATS:
        raise ImageReadError(f"image format {kind} is not accepted; send one of {', '.join(sorted(ACCEPTED_FORMATS))}")
    if width < 1 or height < 1:
        raise ImageReadError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise PayloadTooLargeError(f"image is {width}x{height} = {width * height / 1e6:.1f} MP, above the limit of "
                                   f"{max_pixels / 1e6:.1f} MP; downscale it")
    return kind, width, height
