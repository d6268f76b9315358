"""Errors of the HTTP service, each a :class:`~fastsam.errors.FastSAMError` with the HTTP status it maps to."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from fastsam.errors import FastSAMError, ImageReadError, InvalidInputError, ModelNotFoundError


class UnknownImageError(FastSAMError, KeyError):
    """An image id that was never uploaded, was deleted, or was evicted from the cache."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown image id"


class PayloadTooLargeError(InvalidInputError):
    """An upload or prompt body larger than the configured byte limit, or an image above the pixel limit."""


class UnsupportedMediaTypeError(InvalidInputError):
    """An upload whose content type is not an image (nor multipart form data holding one)."""


class RequestTimeoutError(FastSAMError):
    """A request body that did not arrive in full within the body timeout."""


class ClientGoneError(FastSAMError):
    """The client closed the connection before its request body arrived; nobody reads the answer."""


class UnknownHostError(FastSAMError):
    """A Host header naming none of the hosts this server answers to (a DNS-rebinding attempt or a typo)."""


class CrossOriginError(FastSAMError):
    """A state-changing request sent by a page of another origin (a cross-site upload or delete)."""


class UnauthorizedError(FastSAMError):
    """A request without the server's API token, or with a wrong one."""


class ServerBusyError(FastSAMError):
    """Every model worker is busy and the queue is full; retry later."""


class FeatureUnavailableError(FastSAMError):
    """A request needs something this server was not configured with (a text model for text prompts)."""


def http_status(error: Exception) -> int:
    """The HTTP status code for a user error."""
    for kind, status in ((UnknownImageError, 404), (PayloadTooLargeError, 413), (UnsupportedMediaTypeError, 415),
                         (RequestTimeoutError, 408), (ClientGoneError, 400), (UnknownHostError, 400),
                         (CrossOriginError, 403), (UnauthorizedError, 401), (ServerBusyError, 503),
                         (FeatureUnavailableError, 501), (ImageReadError, 422), (ModelNotFoundError, 503),
                         (InvalidInputError, 400)):
        if isinstance(error, kind):
            return status
    return 400


def error_code(error: Exception) -> str:
    """A stable machine-readable name for an error: its class name in snake case, without '_error'."""
    name = type(error).__name__
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return snake.removesuffix("_error")


# Object reprs ("<_io.BytesIO object at 0x7f...>") and bare addresses from library messages.
_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")


def _private_roots() -> list[str]:
    roots = {os.getcwd(), str(Path.home()), sys.prefix, sys.base_prefix, tempfile.gettempdir(),
             str(Path(__file__).resolve().parents[2])}
    # Longest first, so that a root inside another is replaced whole.
    return sorted((r for r in roots if len(r) > 1), key=len, reverse=True)


_ROOTS = _private_roots()


def public_message(message: str) -> str:
    """``message`` without what a remote client must not learn: memory addresses and this machine's paths."""
    message = _ADDRESS.sub("0x…", _OBJECT_REPR.sub("the data", message))
    for root in _ROOTS:
        message = message.replace(root, "…")
    return message
