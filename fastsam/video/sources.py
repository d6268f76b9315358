"""Where video frames come from: a video file, a folder or glob of frames, a camera index or a stream URL.

Frames are decoded one at a time as they are asked for (never all held). A video file and a live source differ
in how their end is read: a file that stops well before the frame count its header gives is truncated, a live
source that stops returning frames has dropped; both raise :class:`StreamDroppedError` after the frames read so
far have been yielded, so that a caller keeps what it has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from fastsam.batch.sources import open_source
from fastsam.errors import FastSAMError, ImageReadError, InvalidInputError
from fastsam.io.image import IMAGE_SUFFIXES, load_image

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".gif"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
# A file whose header promises more frames than it yields is reported as truncated only beyond this shortfall:
# containers estimate their count from the duration, which can be a frame or two off.
FRAME_COUNT_SLACK = 2


class VideoReadError(FastSAMError):
    """A video, camera or stream cannot be opened, or holds no frames."""


class StreamDroppedError(VideoReadError):
    """A source stopped before its end; ``frames_read`` frames were delivered before it did."""

    def __init__(self, message: str, frames_read: int) -> None:
        super().__init__(message)
        self.frames_read = frames_read


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its 0-based ``index``, ``time_s`` (index / fps, or None without a frame rate) and
    ``image`` (H, W, 3) uint8 RGB."""

    index: int
    time_s: float | None
    image: np.ndarray


def _is_camera(spec: str) -> bool:
    return spec.isdigit()


def _is_stream(spec: str) -> bool:
    return spec.lower().startswith(STREAM_SCHEMES)


class FrameSource:
    """A sequence of frames opened from ``spec``: a video file, a folder of images (sorted by name, recursively),
    a glob of images, a camera index ('0') or a stream URL (rtsp://, http://, ...).

    ``fps`` (frames per second; None for frames from images), ``frame_size`` (width, height) and
    ``frame_count`` (None for live sources) are read when the source is opened. :meth:`frames` decodes lazily.
    """

    def __init__(self, spec: str | os.PathLike | int) -> None:
        if isinstance(spec, bool) or not isinstance(spec, (str, os.PathLike, int)):
            raise InvalidInputError(f"a video source must be a path, URL or camera index, got {type(spec).__name__}")
        if isinstance(spec, int):
            if spec < 0:
                raise InvalidInputError(f"a camera index must be >= 0, got {spec}")
            spec = str(spec)
        self.spec = os.fspath(spec)
        if not self.spec:
            raise InvalidInputError("the video source is empty; give a file, folder, glob, camera index or URL")
        # A camera never ends by itself; a URL is live unless its frame count is known (a file served over HTTP).
        self.live = _is_camera(self.spec) or _is_stream(self.spec)
        self._image_paths: list[Path] | None = None
        self.fps: float | None = None
        self.frame_count: int | None = None
        self.kind = self._probe()

    # ------------------------------------------------------------------------------------------- opening
    def _probe(self) -> str:
        path = Path(self.spec).expanduser()
        if not self.live and (path.is_dir() or (not path.exists() and set("*?[") & set(self.spec))
                              or (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)):
            images = open_source(self.spec)
            self._image_paths = [images.path_of(key) for key in images.keys()]
            if not self._image_paths:
                raise VideoReadError(f"{self.spec} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            first = self._read_image(0)
            self.frame_size = (int(first.shape[1]), int(first.shape[0]))
            self.frame_count = len(self._image_paths)
            return "images"
        if not self.live and not path.is_file():
            raise VideoReadError(f"no such video file, folder or glob: {self.spec}")
        capture = self._open_capture()
        try:
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            fps = float(capture.get(cv2.CAP_PROP_FPS))
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            if width <= 0 or height <= 0:
                ok, frame = capture.read()
                if not ok or frame is None:
                    raise VideoReadError(f"{self.spec}: opened but holds no frames (empty or unreadable video)")
                height, width = frame.shape[:2]
        finally:
            capture.release()
        self.frame_size = (width, height)
        self.fps = fps if np.isfinite(fps) and 0 < fps < 1000 else None
        if _is_stream(self.spec) and count > 0:
            self.live = False
        self.frame_count = None if self.live or count <= 0 else count
        return "camera" if _is_camera(self.spec) else "stream" if self.live else "video"

    def _open_capture(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(int(self.spec)) if _is_camera(self.spec) else cv2.VideoCapture(self.spec)
        if not capture.isOpened():
            capture.release()
            if _is_camera(self.spec):
                why = "camera (no such device, or it is busy)"
            elif _is_stream(self.spec):
                why = "stream (unreachable, or not a video)"
            else:
                why = "video file (not a video, or an unsupported codec)"
            raise VideoReadError(f"{self.spec}: OpenCV cannot open this {why}")
        return capture

    def _read_image(self, index: int) -> np.ndarray:
        assert self._image_paths is not None
        try:
            return load_image(self._image_paths[index])
        except ImageReadError as exc:
            raise StreamDroppedError(f"frame {index}: {exc}", index) from exc

    # ------------------------------------------------------------------------------------------- reading
    def describe(self) -> str:
        """One line: the source, its frame size, frame rate and length as far as they are known."""
        width, height = self.frame_size
        fps = f"{self.fps:.2f} fps" if self.fps else "no frame rate"
        count = f"{self.frame_count} frames" if self.frame_count is not None else "length unknown"
        return f"{self.spec}: {self.kind}, {width}x{height}, {fps}, {count}"

    def frames(self, start: int = 0) -> Iterator[Frame]:
        """Frames ``start``, ``start + 1``, ... to the end, decoded one at a time. Frames before ``start`` are
        skipped (decoded and dropped for a video: container seeking is not frame-exact)."""
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
            raise InvalidInputError(f"start frame must be an integer >= 0, got {start!r}")
        if self._image_paths is not None:
            for index in range(int(start), len(self._image_paths)):
                yield self._frame(index, self._checked(self._read_image(index), index))
            return
        capture = self._open_capture()
        index = 0
        try:
            while True:
                if index < start:
                    ok = capture.grab()
                    frame = None
                else:
                    ok, frame = capture.read()
                if not ok:
                    break
                if frame is not None:
                    yield self._frame(index, self._checked(np.ascontiguousarray(frame[..., ::-1]), index))
                index += 1
        finally:
            capture.release()
        self._check_end(index)

    def _frame(self, index: int, image: np.ndarray) -> Frame:
        return Frame(index, index / self.fps if self.fps else None, image)

    def _checked(self, image: np.ndarray, index: int) -> np.ndarray:
        if (image.shape[1], image.shape[0]) != self.frame_size:
            raise VideoReadError(f"{self.spec}: frame {index} is {image.shape[1]}x{image.shape[0]} but the first is "
                                 f"{self.frame_size[0]}x{self.frame_size[1]}; frames of one video must share a size")
        return image

    def _check_end(self, read: int) -> None:
        """Raise when a source ended before its end: no frame at all, a truncated file, or a dropped stream."""
        if read == 0:
            raise VideoReadError(f"{self.spec}: no frame could be decoded (empty, truncated or unsupported video)")
        if self.live:
            raise StreamDroppedError(f"{self.spec}: the {self.kind} stopped delivering frames after {read} frames",
                                     read)
        if self.frame_count is not None and read < self.frame_count - FRAME_COUNT_SLACK:
            raise StreamDroppedError(f"{self.spec}: decoding stopped after {read} of the {self.frame_count} frames "
                                     "its header announces (truncated or corrupt file)", read)
