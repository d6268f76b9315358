"""Exception types raised by fastsam.

Every error a user can cause derives from :class:`FastSAMError`, so callers (and the CLI, which turns these
into a one-line message and exit code 2) can tell user mistakes apart from bugs.
"""

from __future__ import annotations


class FastSAMError(Exception):
    """Base class of every error caused by user input, files or configuration."""


class InvalidInputError(FastSAMError, ValueError):
    """An argument (point, box, label, threshold, size...) is malformed or out of range."""


class ImageReadError(FastSAMError):
    """An image file is missing, empty, truncated, not an image, or too large."""


class CheckpointError(FastSAMError):
    """A checkpoint cannot be read or does not hold a YOLOv8-seg / FastSAM model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle asks for something outside the allow-list (it may try to run code)."""


class ModelNotFoundError(FastSAMError):
    """A zoo model is neither cached nor downloadable (for example offline)."""


class OutputWriteError(FastSAMError, OSError):
    """An output file or folder cannot be written (read-only folder, a file in the way, disk full...)."""


class MissingDependencyError(FastSAMError, ImportError):
    """An optional package needed for a feature is not installed (the message names the extra to install)."""
