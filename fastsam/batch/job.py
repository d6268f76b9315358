"""A batch job's plan, its resume rules and its end.

The inputs are listed once per run in a stable order and split by position into shards of ``shard_size``.
The plan's identity (input keys, shard size, model weights, inference settings, prompts) is stored in the
manifest; a rerun with the same identity skips the committed shards and computes the others, and a rerun with a
different one is refused with the differences spelled out. Engines, worker counts and devices may change
between runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from fastsam.batch.records import load_prompts, read_jsonl
from fastsam.batch.shards import OutputFolder, iter_input_keys
from fastsam.batch.sources import Source, open_source
from fastsam.errors import InvalidInputError

FORMAT = "fastsam-batch/1"
DEFAULT_SHARD_SIZE = 64


@dataclass(frozen=True)
class Settings:
    """Inference settings of a job: the model (as given, and the resolved weights file) and the predictor's."""

    model: str
    weights: str
    imgsz: int = 1024
    conf: float = 0.4
    iou: float = 0.9
    max_det: int = 300
    retina: bool = True

    def predictor_kwargs(self) -> dict:
        return {"imgsz": self.imgsz, "conf": self.conf, "iou": self.iou, "max_det": self.max_det,
                "retina": self.retina}


@dataclass(frozen=True)
class WorkItem:
    """One input: its shard, its place in the shard, the shard's length, key, path and prompt.

    prompt: None in everything mode; a dict of points / labels / boxes / per_point; ``{}`` when a prompts file
    was given but names no prompt for this input (it becomes an error record).
    """

    shard: int
    offset: int
    shard_len: int
    key: str
    path: str
    prompt: dict | None = None


@dataclass
class Summary:
    dest: Path
    inputs: int
    records: int
    errors: int
    shards: int
    processed: int  # inputs computed by this run (the others were already done)
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_HASHED = {"input_keys_sha256": "the list of input files", "weights_sha256": "the model weights",
           "prompts_sha256": "the prompts file"}


def _describe(name: str, then: object, now: object) -> str:
    if name in _HASHED:
        what = _HASHED[name]
        if then is None or now is None:
            return f"{what}: {'none' if then is None else 'given'} then, {'none' if now is None else 'given'} now"
        return f"{what} changed"
    if name == "inputs":
        return f"{then} inputs then, {now} now"
    return f"{name} {then} then, {now} now"


class Job:
    """Plans a job over ``source`` into ``dest`` and tracks which shards remain. Use as a context manager:
    entering takes DST's lock, lists the inputs and checks or writes the manifest."""

    def __init__(self, source: str | os.PathLike | Source, dest: str | os.PathLike, settings: Settings,
                 shard_size: int = DEFAULT_SHARD_SIZE, prompts: str | os.PathLike | None = None) -> None:
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise InvalidInputError(f"shard size must be a positive integer, got {shard_size!r}")
        self.source = source if isinstance(source, Source) else open_source(source)
        self.settings = settings
        self.shard_size = shard_size
        self.prompts_path = None if prompts is None else Path(prompts)
        self.prompts: dict[str, dict] | None = None
        self.out = OutputFolder(dest)
        self.num_inputs = 0
        self.done: set[int] = set()
        self.warnings: list[str] = []
        self.manifest: dict = {}

    # ------------------------------------------------------------------------------------------- planning
    def __enter__(self) -> "Job":
        try:
            self.prepare()
        except BaseException:
            self.out.unlock()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.out.unlock()

    @property
    def num_shards(self) -> int:
        return -(-self.num_inputs // self.shard_size)

    def shard_len(self, index: int) -> int:
        return min(self.shard_size, self.num_inputs - index * self.shard_size)

    @property
    def done_inputs(self) -> int:
        return sum(self.shard_len(i) for i in self.done)

    def _identity(self, count: int, keys_sha256: str) -> dict:
        s = self.settings
        return {
            "format": FORMAT, "inputs": count, "input_keys_sha256": keys_sha256, "shard_size": self.shard_size,
            "weights_sha256": sha256_file(s.weights), "imgsz": s.imgsz, "conf": s.conf, "iou": s.iou,
            "max_det": s.max_det, "retina": s.retina,
            "prompts_sha256": None if self.prompts_path is None else sha256_file(self.prompts_path),
        }

    def prepare(self) -> None:
        out = self.out
        if not out.manifest_path.exists() and out.shard_files():
            raise InvalidInputError(f"{out.root} holds shard files but no {out.manifest_path.name}; it is not "
                                    "resumable: choose another output folder")
        if self.prompts_path is not None:
            self.prompts = load_prompts(self.prompts_path)
        out.create()
        out.lock()
        previous = out.read_manifest()
        count, keys_sha256, tmp = self._list_inputs()
        try:
            identity = self._identity(count, keys_sha256)
            # Settings may change freely until a shard is committed: there is nothing to resume yet.
            if previous is not None and previous["identity"] != identity and out.shard_files():
                then = previous["identity"]
                changes = [_describe(k, then.get(k), identity.get(k)) for k in identity if then.get(k) != identity[k]]
                raise InvalidInputError(
                    f"{out.root} holds a job with different inputs or settings ({'; '.join(changes)}); rerun "
                    "with the same source and settings to resume it, or choose another output folder")
            os.replace(tmp, out.inputs_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.num_inputs = count
        out.width = max(5, len(str(max(self.num_shards - 1, 0))))
        out.remove_leftovers()
        self.done = {i for i in out.shard_files() if i < self.num_shards}
        self.manifest = {
            "format": FORMAT,
            "identity": identity,
            "model": self.settings.model,
            "source": {"spec": self.source.spec, "kind": self.source.kind, "root": str(self.source.root.resolve())},
            "prompts": None if self.prompts_path is None else str(self.prompts_path),
            "shards": self.num_shards,
            "shard_name": f"shard-{{:0{out.width}d}}.jsonl",
            "errors_name": f"errors-{{:0{out.width}d}}.jsonl",
            "status": "running",
            "runs": (previous or {}).get("runs", []),
        }
        out.write_manifest(self.manifest)

    def _list_inputs(self) -> tuple[int, str, Path]:
        """Stream the source's keys into a temporary inputs file, hashing them; return count, hash, file."""
        digest = hashlib.sha256()
        count = 0
        matched: set[str] = set()
        fd_path = self.out.root / f".{self.out.inputs_path.name}.{os.getpid()}.tmp"
        with fd_path.open("w", encoding="utf-8") as handle:
            try:
                for key in self.source.keys():
                    line = json.dumps(key) + "\n"
                    handle.write(line)
                    digest.update(line.encode("utf-8"))
                    count += 1
                    if self.prompts is not None and key in self.prompts:
                        matched.add(key)
                handle.flush()
                os.fsync(handle.fileno())
            except BaseException:
                handle.close()
                fd_path.unlink(missing_ok=True)
                raise
        if count == 0:
            fd_path.unlink(missing_ok=True)
            raise InvalidInputError(f"{self.source.spec} holds no images")
        if self.prompts is not None:
            stray = [k for k in self.prompts if k not in matched]
            if stray:
                self.warnings.append(f"{len(stray)} prompt(s) name files that are not inputs (first: {stray[0]!r}); "
                                     "prompt keys are paths relative to the source folder, or list-file lines")
            missing = count - len(matched)
            if missing:
                self.warnings.append(f"{missing} input(s) have no prompt; they are recorded as errors")
        return count, digest.hexdigest(), fd_path

    # ------------------------------------------------------------------------------------------- the work
    def pending(self) -> Iterator[list[WorkItem]]:
        """The work items of each shard not yet committed, shard by shard, read lazily from inputs.jsonl."""
        batch: list[WorkItem] = []
        index = 0
        for position, key in enumerate(iter_input_keys(self.out.inputs_path)):
            index, offset = divmod(position, self.shard_size)
            if index in self.done:
                continue
            prompt = None
            if self.prompts is not None:
                prompt = self.prompts.get(key, {})
            batch.append(WorkItem(index, offset, self.shard_len(index), key, str(self.source.path_of(key)), prompt))
            if offset == self.shard_len(index) - 1:
                yield batch
                batch = []
        if batch:
            raise InvalidInputError(f"{self.out.inputs_path} ended in the middle of shard {index}")

    def finish(self, processed: int, seconds: float, run: dict) -> Summary:
        """Check every shard is committed with one line per input, and mark the manifest complete."""
        out = self.out
        present = out.shard_files()
        records = errors = 0
        for index in range(self.num_shards):
            if index not in present:
                raise RuntimeError(f"shard {index} of {out.root} was not written")
            r = out.count_lines(out.shard_path(index))
            e = out.count_lines(out.errors_path(index))
            if r + e != self.shard_len(index):
                raise InvalidInputError(f"{out.shard_path(index)} and its errors file hold {r + e} lines for "
                                        f"{self.shard_len(index)} inputs; delete the shard file and rerun")
            records += r
            errors += e
        self.manifest["status"] = "complete"
        self.manifest["records"], self.manifest["errors"] = records, errors
        self.manifest["runs"] = [*self.manifest["runs"], run]
        out.write_manifest(self.manifest)
        return Summary(out.root, self.num_inputs, records, errors, self.num_shards, processed, seconds,
                       list(self.warnings))

    def record_run(self, run: dict) -> None:
        """Append a run that stopped early to the manifest's history (best effort)."""
        self.manifest["runs"] = [*self.manifest["runs"], run]
        try:
            self.out.write_manifest(self.manifest)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------- reading
def _output(dest: str | os.PathLike) -> tuple[OutputFolder, int]:
    out = OutputFolder(dest)
    manifest = out.read_manifest()
    if manifest is None:
        raise InvalidInputError(f"{out.root} has no {out.manifest_path.name}; is it a fastsam batch output?")
    out.width = max(5, len(str(max(manifest["shards"] - 1, 0))))
    return out, manifest["shards"]


def read_records(dest: str | os.PathLike) -> Iterator[dict]:
    """The records of a batch output, shard by shard in input order (committed shards only)."""
    out, shards = _output(dest)
    for index in range(shards):
        if out.shard_path(index).exists():
            yield from read_jsonl(out.shard_path(index))


def read_errors(dest: str | os.PathLike) -> Iterator[dict]:
    """The error records of a batch output (of committed shards only), in input order."""
    out, shards = _output(dest)
    for index in range(shards):
        if out.shard_path(index).exists() and out.errors_path(index).exists():
            yield from read_jsonl(out.errors_path(index))


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
