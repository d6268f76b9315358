"""What ``fastsam track`` writes: per-frame COCO-RLE JSONL with track ids, resumable, and an overlay video.

Layout of DIR::

    manifest.json   what the run is (source, model, settings, prompts), how far it got, its status
    tracks.jsonl    one line per frame, appended as each frame is done
    state.json      the tracker's and the followed objects' state after the first ``frames`` lines (atomic)
    overlay.mp4     each track in its own colour with its id drawn (with --overlay)

A line of tracks.jsonl::

    {"frame": 12, "time": 0.4, "size": [h, w],
     "tracks": [{"id": 3, "box": [x1, y1, x2, y2], "score": 0.61, "area": 5120,
                 "rle": {"size": [h, w], "counts": "..."}}],
     "objects": [{"object": 1, "tracks": [3], "reapplied": false, "box": [x1, y1, x2, y2], "area": 5120,
                  "rle": {...}}]}

``tracks`` holds every tracked instance of the frame by id (``box`` is the detection box), ``objects`` the
prompted objects (``rle`` null where the object is not found, or before its prompt frame; ``box`` is the mask's
tight box). A resumed run restores state.json, drops the lines written after it and goes on from there, so an
interrupted run and its resumption write the same lines as one run would.
"""

from __future__ import annotations

import colorsys
import json
import os
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from fastsam.batch.records import dumps, read_jsonl
from fastsam.batch.shards import OutputFolder, fsync_dir, write_text_atomic
from fastsam.errors import InvalidInputError
from fastsam.io.overlay import draw_overlay, point_radius
from fastsam.rle import RunLengthMask
from fastsam.video.predictor import VideoFrame

FORMAT = "fastsam-track/1"
TRACKS = "tracks.jsonl"
STATE = "state.json"
OVERLAY = "overlay.mp4"
DEFAULT_FPS = 25.0  # overlay frame rate for frames without one (folders of images)


def frame_record(frame: VideoFrame) -> dict:
    """The JSONL record of one frame (see the module docstring)."""
    result = frame.result
    tracks = [{"id": track_id, "box": [round(float(v), 2) for v in result.boxes[k]],
               "score": round(float(result.scores[k]), 5), "area": int(result.rles[k].area),
               "rle": result.rles[k].to_coco()} for track_id, k in frame.tracked()]
    objects = []
    for item in frame.objects.values():
        entry: dict = {"object": item.object_id, "tracks": item.track_ids, "reapplied": item.reapplied}
        if item.mask is None:
            entry.update(box=None, area=0, rle=None)
        else:
            entry.update(box=[int(v) for v in item.mask.bbox()], area=int(item.mask.area), rle=item.mask.to_coco())
        objects.append(entry)
    time_s = None if frame.time_s is None else round(frame.time_s, 4)
    return {"frame": frame.index, "time": time_s, "size": list(result.image_size), "tracks": tracks,
            "objects": objects}


def track_color(track_id: int) -> tuple[int, int, int]:
    """A bright RGB colour of its own for each id: hues a golden-ratio turn apart, so neighbours differ."""
    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _label_point(mask: RunLengthMask) -> tuple[int, int] | None:
    """A pixel of the mask to write its id at: the middle of the mask's pixels on its box's middle row (one row
    decoded, not the mask)."""
    x1, y1, x2, y2 = mask.bbox()
    if x2 <= x1:
        return None
    row = (y1 + y2) // 2
    xs = np.flatnonzero(mask.decode_region(x1, row, x2, row + 1)[0])
    return (x1 + int(xs[len(xs) // 2]), row) if xs.size else (x1, y1)


def draw_tracks(image: np.ndarray, masks: list[RunLengthMask], track_ids: list[int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB with each mask in its track's colour, outlined, and its id written on it."""
    if len(masks) != len(track_ids):
        raise InvalidInputError(f"{len(masks)} masks but {len(track_ids)} track ids; give one id per mask")
    colors = np.array([track_color(t) for t in track_ids], np.uint8).reshape(-1, 3)
    out = draw_overlay(image, masks, color=colors, contours=True)
    scale = max(point_radius(*image.shape[:2]) / 6.0, 0.4)
    for mask, track_id in zip(masks, track_ids):
        point = _label_point(mask)
        if point is None:
            continue
        (width, height), _ = cv2.getTextSize(str(track_id), cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        org = (point[0] - width // 2, point[1] + height // 2)
        cv2.putText(out, str(track_id), org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, str(track_id), org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class OverlayVideo:
    """An overlay video written frame by frame (mp4v for .mp4 / .mov, MJPG for .avi)."""

    def __init__(self, path: str | os.PathLike, fps: float | None, frame_size: tuple[int, int]) -> None:
        self.path = Path(path)
        fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
        self._writer = cv2.VideoWriter(str(self.path), fourcc, float(fps or DEFAULT_FPS), tuple(frame_size))
        if not self._writer.isOpened():
            raise InvalidInputError(f"OpenCV cannot write a video to {self.path}")

    def write(self, image: np.ndarray, masks: list[RunLengthMask], track_ids: list[int]) -> None:
        self._writer.write(np.ascontiguousarray(draw_tracks(image, masks, track_ids)[..., ::-1]))

    def write_record(self, image: np.ndarray, record: dict) -> None:
        """Draw a frame from its JSONL record (a resumed run re-draws the frames done before)."""
        tracks = record["tracks"]
        self.write(image, [RunLengthMask.from_coco(t["rle"]) for t in tracks], [t["id"] for t in tracks])

    def close(self) -> None:
        self._writer.release()


class TrackWriter:
    """Writes a run's tracks.jsonl as it goes and its state every ``checkpoint_every`` frames; on ``resume``,
    continues the run ``dest`` holds when its identity (source, model, settings, prompts) is the same."""

    def __init__(self, dest: str | os.PathLike, identity: dict, resume: bool = False,
                 checkpoint_every: int = 50) -> None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise InvalidInputError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
        self.out = OutputFolder(dest)
        self.checkpoint_every = checkpoint_every
        self.identity = identity
        self.tracks_path = self.out.root / TRACKS
        self.state_path = self.out.root / STATE
        self.out.create()
        self.out.lock()
        try:
            self.resume_state = self._prepare(resume)
        except BaseException:
            self.out.unlock()
            raise
        self.frames = 0 if self.resume_state is None else int(self.resume_state["next_frame"])
        self._handle = self.tracks_path.open("a", encoding="utf-8")
        self._since_checkpoint = 0

    def _prepare(self, resume: bool) -> dict | None:
        previous = self.out.read_manifest()
        if previous is not None and previous.get("format") != FORMAT:
            raise InvalidInputError(f"{self.out.root} holds another kind of output ({previous.get('format')}); "
                                    "choose another output folder")
        if previous is None and self.tracks_path.exists():
            raise InvalidInputError(f"{self.tracks_path} exists but {self.out.root} holds no "
                                    f"{self.out.manifest_path.name}; choose another output folder")
        self.out.remove_leftovers()
        state = None
        if previous is not None and self.tracks_path.exists():
            if not resume:
                raise InvalidInputError(f"{self.out.root} holds a track run already; pass --resume (resume=True) "
                                        "to continue it, or choose another output folder")
            then = previous["identity"]
            changes = [f"{k} {then.get(k)!r:.60} then, {v!r:.60} now" for k, v in self.identity.items()
                       if then.get(k) != v]
            if changes:
                raise InvalidInputError(f"{self.out.root} holds a run with other inputs or settings "
                                        f"({'; '.join(changes)}); rerun with the same ones to resume it, or choose "
                                        "another output folder")
            if self.state_path.exists():
                state = json.loads(self.state_path.read_text(encoding="utf-8"))
        self._truncate(0 if state is None else int(state["next_frame"]))
        self.manifest = {"format": FORMAT, "identity": self.identity, "frames": 0 if state is None else
                         int(state["next_frame"]), "status": "running", "runs": (previous or {}).get("runs", [])}
        self.out.write_manifest(self.manifest)
        if state is None:
            self.state_path.unlink(missing_ok=True)
        return state

    def _truncate(self, lines: int) -> None:
        """Keep the first ``lines`` lines of tracks.jsonl (those the saved state covers)."""
        if not self.tracks_path.exists():
            return
        kept = 0
        with self.tracks_path.open("r+b") as handle:
            for _ in range(lines):
                line = handle.readline()
                if not line.endswith(b"\n"):
                    raise InvalidInputError(f"{self.tracks_path} holds fewer lines than its state ({lines}); delete "
                                            f"{self.out.root} and start again")
                kept += len(line)
            handle.truncate(kept)

    def records(self) -> Iterator[dict]:
        """The records written so far (for re-drawing an overlay on resume)."""
        self._handle.flush()
        return read_jsonl(self.tracks_path)

    def write(self, frame: VideoFrame, state: Callable[[], dict]) -> None:
        """Append ``frame``'s record; ``state()`` gives the video state after it (saved every checkpoint_every)."""
        self._handle.write(dumps(frame_record(frame)) + "\n")
        self.frames += 1
        self._since_checkpoint += 1
        if self._since_checkpoint >= self.checkpoint_every:
            self.checkpoint(state())

    def checkpoint(self, state: dict) -> None:
        """Make the lines written so far durable, then save the state that continues after them."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        write_text_atomic(self.state_path, json.dumps(state) + "\n")
        self.manifest["frames"] = self.frames
        self.out.write_manifest(self.manifest)
        self._since_checkpoint = 0

    def close(self, state: dict | None, run: dict, status: str) -> None:
        """Checkpoint (``state`` None: keep the last checkpoint), record the run and its status ('complete',
        'interrupted', 'failed: ...'), unlock."""
        try:
            if state is not None:
                self.checkpoint(state)
            else:
                self._handle.flush()
            self.manifest["status"] = status
            self.manifest["runs"] = [*self.manifest["runs"], run]
            self.out.write_manifest(self.manifest)
            fsync_dir(self.out.root)
        finally:
            self._handle.close()
            self.out.unlock()
