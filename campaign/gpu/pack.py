"""Pack the campaign's training data for a lent GPU machine (the `device` tool), which reaches nothing beside the
repository: only the working tree and carried paths travel, 64 MiB in all, and the four training sets are 110 MB.

    python campaign/gpu/pack.py [--data ../shared/data] [--out .gpu] [--quality 85]

writes ``.gpu/`` (ignored by git; carry it: ``carry: [".gpu"]``):

- ``data.tar.xz``: the training splits only (CamVid train, coco128-seg, tiny_coco train2017, BSDS500 train), in
  ``../shared/data``'s layout so that the same ``fastsam train`` arguments read them. JPEGs are re-encoded at
  ``--quality`` where that makes them smaller (CamVid's are quality 92, BSDS500's ~98); BSDS500's ``.mat`` files
  keep every annotator's segmentation but drop the boundary maps, which training never reads. Annotation JSON is
  kept byte for byte (xz shrinks it to a third). Validation sets stay here: models are measured on this machine afterwards.
- ``wheels/``: pycocotools for the GPU machine's Python 3.12 (its image lacks it), the version installed here.
- ``pack.json``: what was packed, and the bytes that will travel.

It refuses (exit 2) when the repository's files plus the pack would pass the device tool's 64 MiB.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 64 * 2**20
#: (folder under the data root, training files under it): one entry per training source of campaign/run.sh
SOURCES = (
    ("camvid", ("train/*.jpg", "annotations/instances_train.json")),
    ("coco128-seg", ("images/train2017/*.jpg", "labels/train2017/*.txt")),
    ("tiny_coco/tiny_coco", ("train2017/*.jpg", "annotations/instances_train2017.json")),
    ("bsds500", ("images/train/*.jpg", "groundTruth/train/*.mat")),
)
#: Flags from the device tool's README for a wheel that installs on the GPU machine's CPython 3.12.
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64", "manylinux1_x86_64")


def smaller_jpeg(path: Path, quality: int) -> bytes:
    """The image re-encoded at ``quality``, or the file's own bytes when those are no larger."""
    original = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(original, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"{path}: not a readable image")
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return encoded.tobytes() if ok and len(encoded) < len(original) else original


def segmentations_only(path: Path) -> bytes:
    """A BSDS500 ``.mat`` with each annotator's ``Segmentation`` and without ``Boundaries``, compressed; it reads
    back through :func:`fastsam.train.data.bsds.read_bsds_segmentations` to the same label maps."""
    from scipy.io import savemat

    from fastsam.train.data.bsds import read_bsds_segmentations

    labels = read_bsds_segmentations(path)
    truth = np.empty((1, len(labels)), dtype=object)  # a cell array of 1 x 1 structs, as BSDS500 writes it
    for k, label_map in enumerate(labels):
        annotator = np.empty((1, 1), dtype=[("Segmentation", object)])
        annotator[0, 0]["Segmentation"] = label_map.astype(np.uint16)
        truth[0, k] = annotator
    buffer = io.BytesIO()
    savemat(buffer, {"groundTruth": truth}, do_compression=True)
    return buffer.getvalue()


def packed_bytes(path: Path, quality: int) -> bytes:
    if path.suffix == ".jpg":
        return smaller_jpeg(path, quality)
    if path.suffix == ".mat":
        return segmentations_only(path)
    return path.read_bytes()


def repository_bytes(repo: Path) -> int:
    """Bytes of what the device tool sends besides carried paths: tracked and untracked, not ignored, files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            check=True, capture_output=True).stdout.split(b"\0")
    return sum((repo / name.decode()).stat().st_size for name in listed if name and (repo / name.decode()).is_file())


def download_wheel(out: Path) -> Path:
    version = importlib.metadata.version("pycocotools")
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", "-d", str(out)]
    for platform in WHEEL_PLATFORMS:
        command += ["--platform", platform]
    subprocess.run(command + [f"pycocotools=={version}"], check=True)
    wheels = sorted(out.glob(f"pycocotools-{version}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip downloaded no pycocotools {version} wheel into {out}")
    return wheels[-1]


def pack(data: Path, out: Path, quality: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with tempfile.NamedTemporaryFile(dir=out, suffix=".tar.xz.partial", delete=False) as partial:
        with tarfile.open(fileobj=partial, mode="w:xz") as tar:
            for folder, patterns in SOURCES:
                for pattern in patterns:
                    files = sorted((data / folder).glob(pattern))
                    if not files:
                        raise SystemExit(f"{data / folder}: nothing matches {pattern}")
                    for path in files:
                        payload = packed_bytes(path, quality)
                        member = tarfile.TarInfo(str(path.relative_to(data)))
                        member.size, member.mtime = len(payload), 0
                        tar.addfile(member, io.BytesIO(payload))
                    counts[f"{folder}/{pattern}"] = len(files)
    Path(partial.name).replace(out / "data.tar.xz")
    wheel = download_wheel(out / "wheels")
    pack_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    summary = {"data": str(data), "jpeg_quality": quality, "files": counts, "wheel": wheel.name,
               "pack_bytes": pack_bytes, "repository_bytes": repository_bytes(REPO), "limit_bytes": LIMIT_BYTES}
    summary["travel_bytes"] = summary["pack_bytes"] + summary["repository_bytes"]
    (out / "pack.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / ".gpu")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality of re-encoded images (1-100)")
    args = parser.parse_args()
    if not 1 <= args.quality <= 100:
        parser.error(f"--quality must be 1-100, got {args.quality}")
    summary = pack(args.data, args.out, args.quality)
    mib = 2**20
    print(f"{args.out}: {summary['pack_bytes'] / mib:.1f} MiB packed; with the repository "
          f"{summary['travel_bytes'] / mib:.1f} of {LIMIT_BYTES / mib:.0f} MiB would travel")
    if summary["travel_bytes"] > LIMIT_BYTES:
        print("over the device tool's limit: lower --quality", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
