"""``track_video``: a whole video (or stream) through the video predictor into tracks.jsonl and an overlay video,
resumably; what ``fastsam track`` runs."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from fastsam.batch.job import now_iso, sha256_file
from fastsam.errors import InvalidInputError
from fastsam.video.predictor import VideoFrame, VideoPredictor
from fastsam.video.sources import FrameSource, StreamDroppedError
from fastsam.video.writer import OVERLAY, OverlayVideo, TrackWriter

PROMPT_FIELDS = ("frame", "object", "points", "labels", "boxes", "per_point", "texts", "text_model")


@dataclass
class TrackSummary:
    """How a run went: ``frames`` in tracks.jsonl, ``processed`` by this run in ``seconds``, ``tracks`` ids given."""

    dest: Path
    frames: int
    processed: int
    seconds: float
    tracks: int

    @property
    def frames_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def _check_prompts(prompts: Sequence[dict] | None) -> list[dict]:
    if prompts is None:
        return []
    if isinstance(prompts, dict) or not isinstance(prompts, (list, tuple)):
        raise InvalidInputError("prompts must be a list of dicts: {'frame': k, 'points': ..., 'boxes': ...}")
    checked = []
    for n, prompt in enumerate(prompts):
        if not isinstance(prompt, dict):
            raise InvalidInputError(f"prompt {n} must be a dict, got {type(prompt).__name__}")
        unknown = sorted(set(prompt) - set(PROMPT_FIELDS))
        if unknown:
            raise InvalidInputError(f"prompt {n}: unknown field(s) {', '.join(unknown)} (expected "
                                    f"{', '.join(PROMPT_FIELDS)})")
        checked.append({k: v for k, v in prompt.items() if v is not None})
    return checked


def _identity(source: FrameSource, weights: str, video: VideoPredictor, prompts: list[dict]) -> dict:
    p = video.predictor
    spec = source.spec if source.kind in ("camera", "stream") else os.path.abspath(os.path.expanduser(source.spec))
    return {"source": spec, "frame_size": list(source.frame_size), "frame_count": source.frame_count,
            "weights_sha256": sha256_file(weights), "imgsz": p.imgsz, "conf": p.conf, "iou": p.iou,
            "max_det": p.max_det, "retina": p.retina, "tracker": asdict(video.tracker_config), "prompts": prompts}


def track_video(source: str | os.PathLike | int, dest: str | os.PathLike, model: str | os.PathLike = "auto", *,
                prompts: Sequence[dict] | None = None, imgsz: int = 1024, conf: float | None = None,
                low_conf: float | None = None, iou: float | None = None, max_det: int = 300, retina: bool = True,
                device: str = "cpu", precision: str = "fp32", overlay: bool = False, resume: bool = False,
                checkpoint_every: int = 50, progress: bool = False,
                on_frame: Callable[[VideoFrame], Any] | None = None) -> TrackSummary:
    """Track every instance of ``source`` (video file, folder or glob of frames, camera index, stream URL) and
    follow the prompted objects; write ``dest/tracks.jsonl`` (see :mod:`fastsam.video.writer`) and, with
    ``overlay``, ``dest/overlay.mp4``.

    prompts: ``[{"frame": k, "object": id, "points": [[x, y]], "labels": [1], "boxes": [[x1, y1, x2, y2]],
    "texts": ["a dog"], "text_model": CLIP_DIR, "per_point": False}]`` (frame defaults to 0; object to the next
    free id). ``low_conf`` (below ``conf``): weaker detections are kept to extend tracks (ByteTrack's second
    pass). ``resume`` continues the run ``dest`` holds (same source, model, settings and prompts). ``on_frame``
    is called with each frame done. A source that drops mid-way raises
    :class:`~fastsam.video.sources.StreamDroppedError` after the frames so far are written and saved.
    """
    from tqdm import tqdm

    from fastsam.model.zoo import auto_model, is_auto, model_thresholds, resolve_weights

    prompts = _check_prompts(prompts)
    frames = FrameSource(source)
    if resume and frames.live:
        raise InvalidInputError(f"{frames.spec} is a live {frames.kind}: it cannot be resumed")
    name = auto_model() if is_auto(str(model)) else model
    weights = str(resolve_weights(name, progress=progress))
    conf, iou = model_thresholds(str(name), conf, iou)  # by the name asked for, both by one rule
    video = VideoPredictor.from_model(weights, device=device, conf=conf, low_conf=low_conf, imgsz=imgsz, iou=iou,
                                      max_det=max_det, retina=retina, precision=precision)
    state = video.init_state(frames)
    for prompt in prompts:
        options = {k: v for k, v in prompt.items() if k not in ("frame", "object")}
        video.add_prompt(state, prompt.get("frame", 0), prompt.get("object"), **options)

    writer = TrackWriter(dest, _identity(frames, weights, video, prompts), resume=resume,
                         checkpoint_every=checkpoint_every)
    if writer.resume_state is not None:
        state.load_dict(writer.resume_state)
    movie = OverlayVideo(writer.out.root / OVERLAY, frames.fps, frames.frame_size) if overlay else None
    bar = tqdm(total=frames.frame_count, initial=state.next_frame, unit="frame", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, smoothing=0.1, desc="track")
    run = {"device": str(device), "started": now_iso(), "from_frame": state.next_frame}
    processed, start = 0, time.perf_counter()
    status = "complete"
    try:
        if movie is not None and state.next_frame:
            _redraw(frames, writer, movie, state.next_frame)
        for frame in video.propagate(state):
            writer.write(frame, state.to_dict)
            if movie is not None:
                tracked = frame.tracked()
                movie.write(frame.image, [frame.result.rles[k] for _, k in tracked], [t for t, _ in tracked])
            processed += 1
            bar.update(1)
            if on_frame is not None:
                on_frame(frame)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc!r:.200}"
        if isinstance(exc, StreamDroppedError):
            status = f"dropped: {exc}"
        raise
    finally:
        bar.close()
        if movie is not None:
            movie.close()
        seconds = time.perf_counter() - start
        # An interruption inside a frame leaves the tracker a frame ahead of the records: keep the last checkpoint.
        in_step = state.tracker.frame != state.next_frame - 1 or writer.frames != state.next_frame
        writer.close(None if in_step else state.to_dict(), {**run, "ended": now_iso(), "processed": processed,
                                       "seconds": round(seconds, 3), "status": status}, status)
    return TrackSummary(writer.out.root, writer.frames, processed, seconds, state.tracker.next_id - 1)


def _redraw(frames: FrameSource, writer: TrackWriter, movie: OverlayVideo, count: int) -> None:
    """Draw the overlay of the ``count`` frames a resumed run already holds, from their records."""
    records = writer.records()
    for frame, record in zip(frames.frames(0), records):
        if frame.index >= count:
            break
        movie.write_record(frame.image, record)
