"""Errors of the HTTP service, each a :class:`~fastsam.errors.FastSAMError` with the HTTP status it maps to."""

from __future__ import annotations

from fastsam.errors import FastSAMError, ImageReadError, InvalidInputError, ModelNotFoundError


class UnknownImageError(FastSAMError, KeyError):
    """An image id that was never uploaded, was deleted, or was evicted from the cache."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown image id"


class PayloadTooLargeError(InvalidInputError):
    """An upload larger than the configured byte limit."""


class UnsupportedMediaTypeError(InvalidInputError):
    """An upload whose content type is not an image (nor multipart form data holding one)."""


class ServerBusyError(FastSAMError):
    """Every model worker is busy and the queue is full; retry later."""


class FeatureUnavailableError(FastSAMError):
    """A request needs something this server was not configured with (a text model for text prompts)."""


def http_status(error: Exception) -> int:
    """The HTTP status code for a user error."""
    for kind, status in ((UnknownImageError, 404), (PayloadTooLargeError, 413), (UnsupportedMediaTypeError, 415),
                         (ServerBusyError, 503), (FeatureUnavailableError, 501), (ImageReadError, 422),
                         (ModelNotFoundError, 503), (InvalidInputError, 400)):
        if isinstance(error, kind):
            return status
    return 400


def error_code(error: Exception) -> str:
    """A stable machine-readable name for an error: its class name in snake case, without '_error'."""
    name = type(error).__name__
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return snake.removesuffix("_error")
