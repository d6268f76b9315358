"""The output folder of a batch job: atomically written shards, their errors files, the manifest and a lock.

Layout of DST::

    manifest.json        what the job is (settings, plan) and how far it got
    inputs.jsonl         the planned inputs, one JSON string (the key) per line, in job order
    shard-00000.jsonl    records of inputs 0 .. K-1 that succeeded, in input order
    errors-00000.jsonl   error records of inputs 0 .. K-1 that failed (only when some did)
    ...

A shard is committed by renaming its complete temporary file into place (``os.replace``), after its errors
file has been put in place (or a stale one removed). Its presence is therefore the commit point: an errors file
counts only when its shard file exists, and every input of a committed shard appears exactly once in the pair.
Temporary files of an interrupted run start with '.' and are removed when the next run starts.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Iterator

from fastsam.errors import InvalidInputError
from fastsam.io.atomic import AtomicFile

MANIFEST = "manifest.json"
INPUTS = "inputs.jsonl"
LOCK = ".lock"
_SHARD_RE = re.compile(r"^(shard|errors)-(\d+)\.jsonl$")


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    with AtomicFile(path, text=True) as out:
        out.handle.write(text)
    fsync_dir(path.parent)


class ShardWriter:
    """Collects one shard's records and errors in temporary files; :meth:`commit` publishes them."""

    def __init__(self, out: "OutputFolder", index: int) -> None:
        self.out, self.index = out, index
        self.records = self.errors = 0
        self._record_file = AtomicFile(out.shard_path(index), text=True)
        self._error_file: AtomicFile | None = None

    def add(self, line: str, is_error: bool) -> None:
        if is_error:
            if self._error_file is None:
                self._error_file = AtomicFile(self.out.errors_path(self.index), text=True)
            self._error_file.handle.write(line + "\n")
            self.errors += 1
        else:
            self._record_file.handle.write(line + "\n")
            self.records += 1

    def commit(self) -> None:
        if self._error_file is not None:
            self._error_file.commit()
            self._error_file = None
        else:
            self.out.errors_path(self.index).unlink(missing_ok=True)  # left by an attempt that crashed earlier
        self._record_file.commit()
        fsync_dir(self.out.root)

    def abort(self) -> None:
        for pending in (self._record_file, self._error_file):
            if pending is not None:
                pending.abort()
        self._error_file = None


class OutputFolder:
    """DST of a batch job. ``width`` is the number of digits in shard file names (fixed by the plan)."""

    def __init__(self, root: str | os.PathLike, width: int = 5) -> None:
        self.root = Path(root)
        self.width = width
        self._lock_fd: int | None = None

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def inputs_path(self) -> Path:
        return self.root / INPUTS

    def shard_path(self, index: int) -> Path:
        return self.root / f"shard-{index:0{self.width}d}.jsonl"

    def errors_path(self, index: int) -> Path:
        return self.root / f"errors-{index:0{self.width}d}.jsonl"

    # ------------------------------------------------------------------------------------------ lifecycle
    def create(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidInputError(f"cannot use {self.root} as the output folder: a file is in the way") from exc
        except OSError as exc:
            raise InvalidInputError(f"cannot create output folder {self.root}: {exc.strerror or exc}") from exc

    def lock(self) -> None:
        """Take an exclusive lock on DST for this process (released at exit, even on SIGKILL)."""
        import fcntl

        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InvalidInputError(f"another fastsam job is writing to {self.root}; wait for it to end "
                                        "or choose another output folder") from None
            raise
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def remove_leftovers(self) -> None:
        """Delete temporary files and errors files whose shard was never committed (call under the lock)."""
        for entry in os.scandir(self.root):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                Path(entry.path).unlink(missing_ok=True)
            else:
                match = _SHARD_RE.match(entry.name)
                if match and match.group(1) == "errors":
                    if not (self.root / f"shard-{match.group(2)}.jsonl").exists():
                        Path(entry.path).unlink(missing_ok=True)

    def shard_files(self) -> dict[int, Path]:
        """Committed shards present, by index."""
        found = {}
        if self.root.is_dir():
            for entry in os.scandir(self.root):
                match = _SHARD_RE.match(entry.name)
                if match and match.group(1) == "shard":
                    found[int(match.group(2))] = Path(entry.path)
        return found

    def writer(self, index: int) -> ShardWriter:
        return ShardWriter(self, index)

    # ------------------------------------------------------------------------------------------ manifest
    def read_manifest(self) -> dict | None:
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{self.manifest_path} is not valid JSON ({exc.msg}); is {self.root} a "
                                    "fastsam batch output?") from None
        if not isinstance(manifest, dict) or "identity" not in manifest:
            raise InvalidInputError(f"{self.manifest_path} is not a fastsam batch manifest")
        return manifest

    def write_manifest(self, manifest: dict) -> None:
        write_text_atomic(self.manifest_path, json.dumps(manifest, indent=1) + "\n")

    def count_lines(self, path: Path) -> int:
        try:
            with path.open("rb") as handle:
                return sum(1 for line in handle if line.strip())
        except FileNotFoundError:
            return 0


def iter_input_keys(path: Path) -> Iterator[str]:
    with path.open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
