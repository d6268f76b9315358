"""Atomic file writes shared by every writer of fastsam: a temporary file beside the target, published by
renaming it over the target once complete, so readers never see a half-written file.

Files get the mode an ordinary ``open(path, "w")`` would give them (0666 less the umask), not ``mkstemp``'s
0600. Refusals of the file system (read-only folder, no permission, disk full) become
:class:`~fastsam.errors.OutputWriteError` naming the path; a file where a folder should be is an
:class:`~fastsam.errors.InvalidInputError`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Union

from fastsam.errors import InvalidInputError, OutputWriteError

PathLike = Union[str, "os.PathLike[str]"]


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any thread of fastsam writes.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_read_umask()


def write_failure(path: PathLike, exc: OSError, doing: str = "write") -> OutputWriteError:
    """The OutputWriteError to raise when ``doing`` ``path`` failed with ``exc``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OutputWriteError(f"cannot {doing} {str(path)!r}: {reason}")


def check_file_path(path: object, name: str = "path") -> Path:
    """``path`` as a Path, after checking it names a file (not a folder). Raises InvalidInputError."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"{name} must be a str or path, got {type(path).__name__}")
    result = Path(path)
    if str(path) == "" or result.name == "":
        raise InvalidInputError(f"{name} must name a file, got {str(path)!r}")
    if result.is_dir():
        raise InvalidInputError(f"{name} {str(result)!r} is a folder; give a file name")
    return result


def make_folder(folder: PathLike) -> Path:
    """Create ``folder`` and its parents if needed. Raises InvalidInputError when a file is in the way and
    OutputWriteError when the file system refuses (read-only, no permission)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise InvalidInputError(f"cannot create folder {str(folder)!r}: a file is in the way") from exc
    except OSError as exc:
        raise write_failure(folder, exc, "create folder") from exc
    return folder


def check_writable_folder(folder: PathLike) -> Path:
    """Create ``folder`` if needed and prove it takes new files (by creating and removing one), so that a
    read-only or full output folder is reported before any work. Returns the folder."""
    folder = make_folder(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastsam-write-check.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise write_failure(folder, exc, "write to folder") from exc
    return folder


class AtomicFile:
    """A temporary file in ``target``'s folder (created if needed): write to :attr:`handle`, then
    :meth:`commit` (flush, fsync, rename over ``target``) or :meth:`abort` (delete). As a context manager it
    commits when the block succeeds and aborts when it raises (an OSError of writing becoming OutputWriteError)."""

    def __init__(self, target: PathLike, text: bool = False) -> None:
        self.target = Path(target)
        make_folder(self.target.parent)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
        except OSError as exc:
            raise write_failure(self.target, exc) from exc
        self.tmp = Path(tmp)
        try:
            os.fchmod(fd, FILE_MODE)
            self.handle: IO = os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise

    def commit(self) -> Path:
        """Publish the file at ``target``; returns ``target``."""
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self.tmp, self.target)
        except OSError as exc:
            self.abort()
            raise write_failure(self.target, exc) from exc
        except BaseException:
            self.abort()
            raise
        return self.target

    def abort(self) -> None:
        """Drop the temporary file (idempotent)."""
        try:
            self.handle.close()
        except OSError:
            pass  # a failed flush of data that is thrown away anyway
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
            return
        self.abort()
        if isinstance(exc, OSError) and not isinstance(exc, OutputWriteError):
            raise write_failure(self.target, exc) from exc


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating parent folders; returns the path."""
    path = check_file_path(path)
    with AtomicFile(path) as out:
        out.handle.write(data)
    return path
