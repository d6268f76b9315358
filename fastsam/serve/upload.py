"""Reading request bodies: size limit and deadline while streaming, content type, and a cheap image header check
(format and pixel count) before any worker time is spent on it."""

from __future__ import annotations

import asyncio
import io
import warnings

from PIL import Image, UnidentifiedImageError
from starlette.requests import ClientDisconnect, Request

from fastsam.errors import ImageReadError
from fastsam.serve.errors import (ClientGoneError, PayloadTooLargeError, RequestTimeoutError,
                                  UnsupportedMediaTypeError, public_message)

#: Formats a browser or labelling tool sends; PIL reads each of them.
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM"}
RAW_TYPES = {"application/octet-stream"}


async def read_limited(request: Request, max_bytes: int, timeout: float, what: str = "upload") -> bytes:
    """The request body, refusing it (413) as soon as it exceeds ``max_bytes``, whatever Content-Length says, and
    (408) when it has not arrived in full after ``timeout`` seconds. ``what`` names the body in messages.

    Raises :class:`ClientGoneError` when the client disconnects first.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"{what} of {int(declared)} bytes is above the limit of {max_bytes} bytes")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    stream = request.stream()
    chunks, size = [], 0
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), max(0.0, deadline - loop.time()))
            except StopAsyncIteration:
                break
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLargeError(f"{what} is above the limit of {max_bytes} bytes")
            chunks.append(chunk)
    except asyncio.TimeoutError:
        raise RequestTimeoutError(f"the {what} did not arrive within {timeout:g} s ({size} bytes came)") from None
    except ClientDisconnect:
        raise ClientGoneError(f"client disconnected during the {what}, after {size} bytes") from None
    finally:
        await stream.aclose()
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


async def read_upload(request: Request, max_bytes: int, timeout: float) -> bytes:
    """Image bytes from a raw body (Content-Type image/* or application/octet-stream) or from the ``file`` field
    of multipart/form-data. Raises 413 / 415 / 408 errors for oversized, non-image or too slow uploads."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (content_type.startswith("image/") or content_type in RAW_TYPES or content_type == "multipart/form-data"):
        raise UnsupportedMediaTypeError(f"content type {content_type or '(none)'!r} is not an image; send the image "
                                        f"bytes as image/* or application/octet-stream, or as multipart field 'file'")
    body = await read_limited(request, max_bytes, timeout)
    data = await _file_from_form(request, body, max_bytes) if content_type == "multipart/form-data" else body
    if not data:
        raise ImageReadError("the upload is empty; send the image bytes")
    return data


def check_image_header(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height) from the image header, without decoding the pixels.

    Raises :class:`ImageReadError` when the bytes are not an image of an accepted format, and
    :class:`PayloadTooLargeError` when the image has more than ``max_pixels`` pixels (also when it is so large
    that Pillow refuses to open it as a decompression bomb).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind, width, height = image.format or "", int(image.width), int(image.height)
    except Image.DecompressionBombError:
        # Pillow's own limit (2 x MAX_IMAGE_PIXELS) is far above any sane max_pixels; its message is not ours.
        raise PayloadTooLargeError(f"image has more pixels than the decoder accepts, above the limit of "
                                   f"{max_pixels / 1e6:.1f} MP; downscale it") from None
    except UnidentifiedImageError:
        raise ImageReadError("the upload is not a readable image (unknown format)") from None
    except Exception as exc:  # noqa: BLE001 - a hostile header can raise anything inside a Pillow plugin
        raise ImageReadError(f"the upload is not a readable image ({public_message(str(exc)) or type(exc).__name__})"
                             ) from None
    if kind not in ACCEPTED_FORMATS:
        raise ImageReadError(f"image format {kind} is not accepted; send one of {', '.join(sorted(ACCEPTED_FORMATS))}")
    if width < 1 or height < 1:
        raise ImageReadError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise PayloadTooLargeError(f"image is {width}x{height} = {width * height / 1e6:.1f} MP, above the limit of "
                                   f"{max_pixels / 1e6:.1f} MP; downscale it")
    return kind, width, height
