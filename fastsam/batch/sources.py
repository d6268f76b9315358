"""What a batch job reads: a folder, a glob or a list file, as a stable sequence of (key, path).

The key names an input in the results: its path relative to the source root (folder and glob), or the line as
written (list file). Folders and list files are read as streams, in an order that does not depend on the
file system's listing order, so a job can plan collections far larger than memory; a glob is expanded and
sorted in memory.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fastsam.errors import InvalidInputError
from fastsam.io.image import IMAGE_SUFFIXES

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Source:
    """A collection of images. ``kind`` is 'folder', 'glob', 'list' or 'file'; ``root`` resolves keys to paths."""

    spec: str
    kind: str
    root: Path

    def keys(self) -> Iterator[str]:
        """Input keys in the job's order (sorted for folders and globs, as listed for list files)."""
        if self.kind == "folder":
            yield from _walk_sorted(self.root, "")
        elif self.kind == "glob":
            yield from _glob_keys(self.spec, self.root)
        elif self.kind == "list":
            yield from _list_keys(Path(self.spec))
        else:
            yield Path(self.spec).name

    def path_of(self, key: str) -> Path:
        """Where the image of ``key`` is read from, as an absolute path (workers may run in other folders); a
        list file's relative lines are relative to its folder."""
        return Path(os.path.abspath(self.root / key))


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def open_source(spec: str | os.PathLike) -> Source:
    """Interpret ``spec``: an existing folder (its images, recursively), an image file, a list file (one path per
    line; blank lines and lines starting with '#' skipped), or a glob pattern ('**' recurses)."""
    text = os.fspath(spec)
    if not text:
        raise InvalidInputError("the source is empty; give a folder, a glob or a list file")
    path = Path(text).expanduser()
    if path.is_dir():
        return Source(text, "folder", path)
    if path.is_file():
        if is_image_name(path.name):
            return Source(text, "file", path.parent)
        return Source(text, "list", path.parent)
    if _GLOB_CHARS & set(text):
        return Source(text, "glob", _glob_root(text))
    raise InvalidInputError(f"no such folder, file or list file: {text} (a glob needs * ? or [ ])")


def _walk_sorted(folder: Path, prefix: str) -> Iterator[str]:
    """Image files under ``folder``, depth first with each folder's entries sorted by name, skipping hidden ones.
    Symbolic links to files are followed; links to folders are not (no cycles)."""
    try:
        with os.scandir(folder) as it:
            entries = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_file()) for e in it
                             if not e.name.startswith("."))
    except OSError as exc:
        raise InvalidInputError(f"cannot list folder {folder}: {exc.strerror or exc}") from exc
    for name, is_dir, is_file in entries:
        if is_dir:
            yield from _walk_sorted(folder / name, f"{prefix}{name}/")
        elif is_file and is_image_name(name):
            yield f"{prefix}{name}"


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).expanduser().parts
    fixed = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _glob_keys(pattern: str, root: Path) -> Iterator[str]:
    matches = glob.glob(os.path.expanduser(pattern), recursive=True)
    keys = sorted({Path(m).relative_to(root).as_posix() for m in matches if os.path.isfile(m)})
    if not keys:
        raise InvalidInputError(f"the glob {pattern} matches no files")
    yield from keys


def _list_keys(list_file: Path) -> Iterator[str]:
    try:
        handle = list_file.open("r", encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read list file {list_file}: {exc.strerror or exc}") from exc
    with handle:
        try:
            for line in handle:
                key = line.strip()
                if key and not key.startswith("#"):
                    yield key
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"list file {list_file} is not UTF-8 text (is it an image with an unknown "
                                    f"suffix? images need one of {', '.join(sorted(IMAGE_SUFFIXES))})") from exc
