"""Video segmentation in the style of SAM 2's video predictor: every instance with a persistent id, and objects
chosen by prompts on one frame followed through the video.

    from fastsam.video import VideoPredictor
    video = VideoPredictor.from_model("fastsam-default", imgsz=640)
    state = video.init_state("clip.mp4")
    video.add_prompt(state, frame_index=0, object_id=1, boxes=[[120, 40, 380, 300]])
    for frame in video.propagate(state):
        frame.index, frame.track_ids, frame.objects[1].mask      # RunLengthMask, or None where not found

Each frame is segmented in everything mode, its instances are associated with the tracks
(:class:`~fastsam.video.tracker.InstanceTracker`), and each object's prompt, once its frame is reached, is
answered from that frame's cached result like an image prompt (:meth:`SegmentationResult.prompt`): the instances
it selects name the tracks that are the object from then on. When all of an object's tracks are lost, the
prompt is re-applied on each frame, moved with the object (its points and boxes keep their place relative to
the object's box, at the box the tracks predict), until it selects an instance near where the object was
expected; that instance's track then carries the object.

Frames are streamed: prompts are added before propagation reaches their frame, and nothing but the tracks is
kept from one frame to the next.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from fastsam.errors import InvalidInputError
from fastsam.prompts.validation import check_boxes, check_points
from fastsam.result import SegmentationResult
from fastsam.rle import RunLengthMask, union
from fastsam.video.sources import Frame, FrameSource
from fastsam.video.tracker import InstanceTracker, TrackerConfig, box_iou, coco_rle, mask_iou

# A re-applied prompt is accepted when what it selects overlaps the box where the object was expected this much.
REACQUIRE_IOU = 0.3
_TEXT_OPTIONS = ("text_model", "text_mode", "text_top_k", "text_threshold", "text_metric", "text_crop", "text_wider")


@dataclass
class FollowedObject:
    """An object chosen by a prompt on frame ``frame_index``; ``track_ids`` the tracks that are it (empty until
    that frame); ``anchor`` its xyxy box on the frame it was first found (the prompt's frame of reference when
    the prompt is moved), ``last_box`` where it was last seen."""

    object_id: int
    frame_index: int
    prompt: dict
    track_ids: list[int] = field(default_factory=list)
    anchor: list[float] | None = None
    last_box: list[float] | None = None

    def to_dict(self) -> dict:
        return {"object": self.object_id, "frame": self.frame_index, "prompt": self.prompt,
                "tracks": self.track_ids, "anchor": self.anchor, "last_box": self.last_box}

    @classmethod
    def from_dict(cls, data: dict) -> "FollowedObject":
        return cls(int(data["object"]), int(data["frame"]), dict(data["prompt"]), [int(t) for t in data["tracks"]],
                   data.get("anchor"), data.get("last_box"))


@dataclass
class ObjectMask:
    """An object on one frame: its mask (None before its prompt frame or while it is not found), the tracks
    that make it, and whether its prompt was re-applied on this frame to find it again."""

    object_id: int
    mask: RunLengthMask | None
    track_ids: list[int]
    reapplied: bool = False


@dataclass
class VideoFrame:
    """One frame's answer. ``result`` holds every instance (boxes, scores, RLE masks); ``track_ids[k]`` is the
    persistent id of instance k (0: not tracked, e.g. a tentative detection); ``objects`` the followed objects."""

    index: int
    time_s: float | None
    image: np.ndarray
    result: SegmentationResult
    track_ids: np.ndarray
    objects: dict[int, ObjectMask]

    def tracked(self) -> list[tuple[int, int]]:
        """(track id, instance index) of every tracked instance, by id."""
        return sorted((int(t), k) for k, t in enumerate(self.track_ids) if t > 0)


@dataclass
class VideoState:
    """What :meth:`VideoPredictor.propagate` carries from frame to frame (see :meth:`VideoPredictor.init_state`)."""

    source: FrameSource
    tracker: InstanceTracker
    objects: dict[int, FollowedObject] = field(default_factory=dict)
    next_frame: int = 0

    def to_dict(self) -> dict:
        """JSON-ready state to resume from ``next_frame``."""
        return {"next_frame": self.next_frame, "tracker": self.tracker.to_dict(),
                "objects": [o.to_dict() for o in self.objects.values()]}

    def load_dict(self, data: dict) -> None:
        self.next_frame = int(data["next_frame"])
        self.tracker.load_dict(data["tracker"])
        self.objects = {o.object_id: o for o in map(FollowedObject.from_dict, data["objects"])}


class VideoPredictor:
    """Tracks every instance of a video and follows prompted objects, with an image
    :class:`~fastsam.inference.predictor.Predictor` (its settings: imgsz, conf, ...) segmenting each frame."""

    def __init__(self, predictor: Any, tracker_config: TrackerConfig | None = None,
                 conf: float | None = None) -> None:
        """``conf``: the score of a confident detection (default the predictor's own); when it is above the
        predictor's, the weaker detections the predictor keeps only extend existing tracks (ByteTrack's second
        pass). ``tracker_config`` overrides every tracker setting."""
        if not callable(predictor) or not hasattr(predictor, "conf"):
            raise InvalidInputError(f"predictor must be a fastsam Predictor, got {type(predictor).__name__}")
        low = float(predictor.conf)
        high = low if conf is None else conf
        if isinstance(high, bool) or not isinstance(high, (int, float)) or not low <= high <= 1.0:
            raise InvalidInputError(f"conf must be a number in [{low:g}, 1] (the predictor keeps detections from "
                                    f"{low:g}), got {conf!r}")
        self.predictor = predictor
        self.tracker_config = tracker_config or TrackerConfig(high_score=float(high), new_track_score=float(high),
                                                              low_score=low)

    @classmethod
    def from_model(cls, model: str | os.PathLike = "auto", *, device: str = "cpu", conf: float | None = None,
                   low_conf: float | None = None, tracker_config: TrackerConfig | None = None,
                   **predictor_options: Any) -> "VideoPredictor":
        """Load ``model`` (zoo name, checkpoint, 'auto') into a Predictor. ``conf`` defaults to the model's (0.15
        for the bundled model, else 0.4), and so does the NMS ``iou`` (0.7, else 0.9); with ``low_conf`` (below
        conf) the network keeps weaker detections, which extend tracks but start none. ``predictor_options`` go to
        the Predictor (imgsz, iou, ...)."""
        from fastsam.inference.predictor import Predictor
        from fastsam.model.zoo import auto_model, is_auto, model_thresholds

        name = auto_model() if is_auto(str(model)) else model
        conf, _ = model_thresholds(str(name), conf)  # the NMS iou: Predictor.from_model, by the same rule
        if low_conf is not None and isinstance(conf, (int, float)) and isinstance(low_conf, (int, float)) \
                and low_conf > conf:
            raise InvalidInputError(f"low_conf {low_conf} is above conf {conf}; weak detections score below conf")
        predictor = Predictor.from_model(name, device=device, conf=conf if low_conf is None else low_conf,
                                         **predictor_options)
        return cls(predictor, tracker_config, conf)

    # ------------------------------------------------------------------------------------------ setting up
    def init_state(self, source: str | os.PathLike | int | FrameSource) -> VideoState:
        """Open ``source`` (video file, folder or glob of frames, camera index, stream URL) for propagation."""
        frames = source if isinstance(source, FrameSource) else FrameSource(source)
        return VideoState(frames, InstanceTracker(self.tracker_config))

    def add_prompt(self, state: VideoState, frame_index: int, object_id: int | None = None, points: object = None,
                   labels: object = None, boxes: object = None, per_point: bool = False, texts: object = None,
                   **text_options: Any) -> int:
        """Follow the object that points (x, y pixels; labels 1 / 0), boxes (xyxy pixels) and/or texts select
        on frame ``frame_index`` (0-based), as :meth:`SegmentationResult.prompt` selects on an image (text
        options: text_model, text_mode, ...). Returns the object's id (``object_id``, or the next free one)."""
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)) or frame_index < 0:
            raise InvalidInputError(f"frame_index must be an integer >= 0, got {frame_index!r}")
        frame_index = int(frame_index)
        count = state.source.frame_count
        if count is not None and frame_index >= count:
            raise InvalidInputError(f"prompt frame {frame_index} is beyond the end: {state.source.spec} has {count} "
                                    f"frames (0 to {count - 1})")
        if frame_index < state.next_frame:
            raise InvalidInputError(f"frame {frame_index} has been passed (frames are streamed, the next is "
                                    f"{state.next_frame}); add prompts before propagating to their frame")
        if object_id is None:
            object_id = max(state.objects, default=0) + 1
        if isinstance(object_id, bool) or not isinstance(object_id, (int, np.integer)) or object_id < 1:
            raise InvalidInputError(f"object_id must be a positive integer, got {object_id!r}")
        unknown = sorted(set(text_options) - set(_TEXT_OPTIONS))
        if unknown:
            raise InvalidInputError(f"unknown prompt option(s): {', '.join(unknown)}")
        if points is None and boxes is None and texts is None:
            raise InvalidInputError("give points, boxes and/or texts to select the object with")
        width, height = state.source.frame_size
        prompt: dict = dict(text_options)
        if points is not None:
            pts, labs = check_points(points, labels, (height, width))
            prompt.update(points=np.asarray(points, np.float64).reshape(-1, 2).tolist(), labels=labs.tolist(),
                          per_point=bool(per_point))
        elif labels is not None:
            raise InvalidInputError("labels were given without points")
        if boxes is not None:
            prompt["boxes"] = check_boxes(boxes, (height, width)).tolist()
        if texts is not None:
            prompt["texts"] = [texts] if isinstance(texts, str) else list(texts)
        state.objects[int(object_id)] = FollowedObject(int(object_id), frame_index, prompt)
        return int(object_id)

    # ------------------------------------------------------------------------------------------ running
    def propagate(self, state: VideoState) -> Iterator[VideoFrame]:
        """Segment, track and follow frame by frame from ``state.next_frame`` to the end of the source."""
        for frame in state.source.frames(state.next_frame):
            yield self.step(state, frame)
        late = [o for o in state.objects.values() if o.frame_index >= state.next_frame]
        if late:
            raise InvalidInputError(f"prompt frame {late[0].frame_index} is beyond the end: {state.source.spec} "
                                    f"ended after {state.next_frame} frames")

    def step(self, state: VideoState, frame: Frame) -> VideoFrame:
        """Process one frame (the next one: ``frame.index == state.next_frame``)."""
        if frame.index != state.next_frame:
            raise InvalidInputError(f"expected frame {state.next_frame}, got frame {frame.index}")
        result = self.predictor(frame.image)
        association = state.tracker.update(result.boxes, result.scores, result.rles)
        track_ids = association.track_ids
        objects = {}
        for followed in state.objects.values():
            if frame.index < followed.frame_index:
                objects[followed.object_id] = ObjectMask(followed.object_id, None, [])
            elif frame.index == followed.frame_index:
                objects[followed.object_id] = self._select(state, followed, result, track_ids, first=True)
            else:
                objects[followed.object_id] = self._follow(state, followed, result, track_ids)
        state.next_frame = frame.index + 1
        return VideoFrame(frame.index, frame.time_s, frame.image, result, track_ids, objects)

    def _follow(self, state: VideoState, followed: FollowedObject, result: SegmentationResult,
                track_ids: np.ndarray) -> ObjectMask:
        present = [k for k, t in enumerate(track_ids) if t in followed.track_ids]
        if present:
            return self._answer(followed, result, present, track_ids)
        return self._select(state, followed, result, track_ids, first=False)

    def _answer(self, followed: FollowedObject, result: SegmentationResult, instances: list[int],
                track_ids: np.ndarray, reapplied: bool = False) -> ObjectMask:
        mask = union([result.rles[k] for k in instances], *result.image_size)
        box = mask.bbox()
        followed.last_box = [float(v) for v in box]
        if followed.anchor is None:
            followed.anchor = followed.last_box
        return ObjectMask(followed.object_id, mask, sorted({int(track_ids[k]) for k in instances}), reapplied)

    def _select(self, state: VideoState, followed: FollowedObject, result: SegmentationResult,
                track_ids: np.ndarray, first: bool) -> ObjectMask:
        """Answer the object's prompt on this frame (moved to where the object is expected, after its first
        frame) and let the selected instances' tracks carry the object."""
        expected = None if first else self._expected_box(state, followed)
        prompt = followed.prompt if first else self._moved_prompt(followed, expected, result.image_size)
        if not result.rles or prompt is None:
            return ObjectMask(followed.object_id, None, [])
        instances = self._instances(result, result.prompt(**prompt))
        if not instances:
            return ObjectMask(followed.object_id, None, [])
        if expected is not None:
            found = np.array(union([result.rles[k] for k in instances], *result.image_size).bbox(), np.float64)
            if box_iou(found, expected)[0, 0] < REACQUIRE_IOU:
                return ObjectMask(followed.object_id, None, [])
        instances = sorted({self._tracked_instance(state, result, track_ids, k) for k in instances})
        followed.track_ids = sorted({int(track_ids[k]) for k in instances})
        return self._answer(followed, result, instances, track_ids, reapplied=not first)

    def _tracked_instance(self, state: VideoState, result: SegmentationResult, track_ids: np.ndarray,
                          instance: int) -> int:
        """``instance`` when it has a track; else the tracked instance it repeats (the tracker starts no track for
        a repeat, see TrackerConfig.duplicate_iou); else ``instance``, given a track now."""
        if track_ids[instance]:
            return instance
        tracked = np.flatnonzero(track_ids)
        if tracked.size:
            overlap = mask_iou([coco_rle(result.rles[instance])], [coco_rle(result.rles[k]) for k in tracked])[0]
            if overlap.max() >= state.tracker.config.duplicate_iou:
                return int(tracked[np.argmax(overlap)])
        track_ids[instance] = state.tracker.promote(instance)
        return instance

    def _instances(self, result: SegmentationResult, selection: Any) -> list[int]:
        """The instances a selection holds; a merged mask (point prompts) counts as the instance that best
        matches it."""
        chosen = []
        for mask, instance in zip(selection.masks, selection.instance_ids):
            if mask.area == 0:
                continue
            if instance is None:
                instance = int(np.argmax(mask_iou([coco_rle(mask)], [coco_rle(r) for r in result.rles])[0]))
            chosen.append(int(instance))
        return sorted(set(chosen))

    def _expected_box(self, state: VideoState, followed: FollowedObject) -> np.ndarray | None:
        """Where the object should be on this frame: its live tracks' predicted boxes, else where it was last."""
        boxes = [t.box for t in map(state.tracker.track, followed.track_ids) if t is not None]
        if boxes:
            stacked = np.stack(boxes)
            return np.concatenate([stacked[:, :2].min(0), stacked[:, 2:].max(0)])
        return None if followed.last_box is None else np.asarray(followed.last_box, np.float64)

    def _moved_prompt(self, followed: FollowedObject, expected: np.ndarray | None,
                      image_size: tuple[int, int]) -> dict | None:
        """The prompt with its points and boxes moved and scaled from the object's prompt-frame box to
        ``expected``; None when they cannot be placed (outside the image)."""
        prompt = dict(followed.prompt)
        if followed.anchor is None:  # never found yet: the prompt where it was given
            return prompt
        if expected is None:
            return prompt if "points" not in prompt and "boxes" not in prompt else None
        anchor = np.asarray(followed.anchor, np.float64)
        scale = (expected[2:] - expected[:2]) / np.maximum(anchor[2:] - anchor[:2], 1.0)
        height, width = image_size

        def move(xy: np.ndarray) -> np.ndarray:
            return expected[:2] + (xy - anchor[:2]) * scale

        if "points" in prompt:
            points = move(np.asarray(prompt["points"], np.float64))
            inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
            if not inside.all():
                return None
            prompt["points"] = points.tolist()
        if "boxes" in prompt:
            boxes = np.asarray(prompt["boxes"], np.float64)
            moved = np.concatenate([move(boxes[:, :2]), move(boxes[:, 2:])], axis=1)
            moved[:, 0::2] = moved[:, 0::2].clip(0, width)
            moved[:, 1::2] = moved[:, 1::2].clip(0, height)
            if ((moved[:, 2:] - moved[:, :2]) < 1).any():
                return None
            prompt["boxes"] = moved.tolist()
        return prompt
