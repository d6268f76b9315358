"""Multi-object tracking of segmented instances, in the manner of ByteTrack, with masks in the association.

Each frame's detections (boxes, scores, run-length masks) are associated with the tracks in passes:

1. confident detections (score >= ``high_score``) against every confirmed track, tracked or lost (a lost
   track matched here is re-found, with its id);
2. the remaining weak detections (``low_score`` <= score < ``high_score``: an occluded or blurred object
   scores low) against the tracks still unmatched that were tracked on the previous frame;
3. the remaining confident detections against tentative tracks (born on the previous frame); a tentative
   track matched twice is confirmed and only then given its id, so that one-frame flickers use no id.

Similarity is a blend of box IoU (the track's box predicted by a constant-velocity Kalman filter) and mask IoU
(the track's last mask, compared on the COCO RLEs without decoding). FastSAM finds nested instances (a dog,
its head, both dogs) whose boxes nearly coincide; the masks tell them apart. Pairs are taken greedily from
the most similar down above a threshold: once the threshold has gated them, the pairs are almost always
unambiguous, and greedy matching needs no assignment solver (ByteTrack uses the ``lap`` package, a compiled
dependency, for the optimal assignment).

Unmatched tracked tracks become lost and keep being predicted (without growing) for ``max_lost`` frames, then
are dropped. Unmatched confident detections (score >= ``new_track_score``) start tentative tracks, unless they
repeat (mask IoU >= ``duplicate_iou``) an instance matched on the same frame; on the first frame they are
confirmed at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from pycocotools import mask as coco_mask

from fastsam.errors import InvalidInputError
from fastsam.rle import RunLengthMask

TENTATIVE, TRACKED, LOST = "tentative", "tracked", "lost"


@dataclass(frozen=True)
class TrackerConfig:
    """Association settings. Scores are detection confidences; similarities blend box and mask IoU in [0, 1]."""

    high_score: float = 0.25
    low_score: float = 0.1
    new_track_score: float = 0.25
    match_similarity: float = 0.3  # pass 1 and 3: weakest accepted similarity
    low_match_similarity: float = 0.5  # pass 2: weak detections must overlap their track well
    box_weight: float = 0.5  # similarity = box_weight * box IoU + (1 - box_weight) * mask IoU
    max_lost: int = 30  # frames a lost track is kept for re-finding
    duplicate_iou: float = 0.8  # a new detection this close (mask IoU) to a tracked one starts no track

    def __post_init__(self) -> None:
        for name in ("high_score", "low_score", "new_track_score", "match_similarity", "low_match_similarity",
                     "box_weight", "duplicate_iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"{name} must be a number in [0, 1], got {value!r}")
        if self.low_score > self.high_score:
            raise InvalidInputError(f"low_score {self.low_score} is above high_score {self.high_score}")
        if isinstance(self.max_lost, bool) or not isinstance(self.max_lost, int) or self.max_lost < 0:
            raise InvalidInputError(f"max_lost must be an integer >= 0, got {self.max_lost!r}")


# ---------------------------------------------------------------------------------------------- motion
class BoxKalman:
    """Constant-velocity Kalman filter on a box's (cx, cy, w, h) in pixels, state (cx, cy, w, h) and their
    velocities in pixels per frame. Noise scales with the box size, as SORT-family trackers do, so that small
    and large objects are equally uncertain relative to their size."""

    POSITION_NOISE = 1.0 / 20.0
    VELOCITY_NOISE = 1.0 / 160.0

    def __init__(self) -> None:
        self.transition = np.eye(8)
        self.transition[:4, 4:] = np.eye(4)
        self.observation = np.eye(4, 8)

    def _scale(self, mean: np.ndarray) -> np.ndarray:
        return np.maximum(np.tile(mean[2:4], 2), 1.0)

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State of a new track from its first (cx, cy, w, h): zero velocity, velocity very uncertain."""
        mean = np.concatenate([measurement, np.zeros(4)])
        scale = self._scale(mean)
        std = np.concatenate([2 * self.POSITION_NOISE * scale, 10 * self.VELOCITY_NOISE * scale])
        return mean, np.diag(std**2)

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = self._scale(mean)
        noise = np.diag(np.concatenate([self.POSITION_NOISE * scale, self.VELOCITY_NOISE * scale]) ** 2)
        return self.transition @ mean, self.transition @ covariance @ self.transition.T + noise

    def update(self, mean: np.ndarray, covariance: np.ndarray,
               measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        noise = np.diag((self.POSITION_NOISE * self._scale(mean)[:4]) ** 2)
        projected = self.observation @ covariance @ self.observation.T + noise
        gain = np.linalg.solve(projected, self.observation @ covariance).T
        mean = mean + gain @ (measurement - self.observation @ mean)
        covariance = covariance - gain @ projected @ gain.T
        return mean, covariance


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 0.0), max(y2 - y1, 0.0)])


def cxcywh_to_xyxy(state: np.ndarray) -> np.ndarray:
    cx, cy, w, h = state[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of xyxy boxes a (A, 4) and b (B, 4)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def coco_rle(mask: RunLengthMask) -> dict:
    """The compressed COCO RLE of a mask with byte counts, as pycocotools' functions take it."""
    rle = mask.to_coco()
    return {"size": rle["size"], "counts": rle["counts"].encode("ascii")}


def mask_iou(a: Sequence[dict], b: Sequence[dict]) -> np.ndarray:
    """(A, B) IoU of COCO RLEs (byte counts); pycocotools skips the pairs whose boxes do not meet."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return np.asarray(coco_mask.iou(list(a), list(b), [0] * len(b)), np.float64).reshape(len(a), len(b))


def greedy_match(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one (row, column) pairs taken from the most similar down, each at least ``threshold``."""
    pairs: list[tuple[int, int]] = []
    if similarity.size == 0:
        return pairs
    rows_used, cols_used = set(), set()
    flat = np.argsort(-similarity, axis=None, kind="stable")
    for row, col in zip(*np.unravel_index(flat, similarity.shape)):
        if similarity[row, col] < threshold:
            break
        if row in rows_used or col in cols_used:
            continue
        rows_used.add(row)
        cols_used.add(col)
        pairs.append((int(row), int(col)))
    return pairs


# ---------------------------------------------------------------------------------------------- tracks
@dataclass
class Track:
    """One followed instance. ``track_id`` is 0 while tentative; ``mask`` is its last matched mask (COCO RLE
    with byte counts); ``last_frame`` the last frame it was matched on."""

    track_id: int
    mean: np.ndarray
    covariance: np.ndarray
    mask: dict
    score: float
    state: str
    first_frame: int
    last_frame: int
    hits: int = 1

    @property
    def box(self) -> np.ndarray:
        """Current (predicted or updated) xyxy box in pixels."""
        return cxcywh_to_xyxy(self.mean)

    def to_dict(self) -> dict:
        mask = {"size": list(self.mask["size"]), "counts": self.mask["counts"].decode("ascii")}
        return {"id": self.track_id, "mean": self.mean.tolist(), "covariance": self.covariance.tolist(),
                "mask": mask, "score": self.score, "state": self.state, "first_frame": self.first_frame,
                "last_frame": self.last_frame, "hits": self.hits}

    @classmethod
    def from_dict(cls, data: dict) -> "Track":
        mask = {"size": list(data["mask"]["size"]), "counts": data["mask"]["counts"].encode("ascii")}
        return cls(int(data["id"]), np.asarray(data["mean"], np.float64), np.asarray(data["covariance"], np.float64),
                   mask, float(data["score"]), str(data["state"]), int(data["first_frame"]), int(data["last_frame"]),
                   int(data["hits"]))


@dataclass
class Association:
    """The tracker's answer for one frame: ``track_ids[k]`` the confirmed track of detection k (0 for none);
    ``refound`` the ids of lost tracks found again on this frame, ``born`` the ids confirmed on it."""

    track_ids: np.ndarray
    refound: list[int] = field(default_factory=list)
    born: list[int] = field(default_factory=list)


class InstanceTracker:
    """Gives every detected instance a persistent id across frames (see the module docstring)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.kalman = BoxKalman()
        self.tracks: list[Track] = []
        self.frame = -1
        self.next_id = 1
        self._detection_tracks: list[Track | None] = []
        self._last: tuple[np.ndarray, np.ndarray, list[dict]] = (np.zeros((0, 4)), np.zeros(0), [])

    # ------------------------------------------------------------------------------------------ updating
    def update(self, boxes: np.ndarray, scores: np.ndarray, masks: Sequence[RunLengthMask]) -> Association:
        """Associate one frame's detections: boxes (N, 4) xyxy pixels, scores (N,), masks N run-length masks.
        Returns which confirmed track each detection belongs to."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if not (len(boxes) == len(scores) == len(masks)):
            raise InvalidInputError(f"{len(boxes)} boxes, {len(scores)} scores and {len(masks)} masks; give one of "
                                    "each per detection")
        cfg = self.config
        self.frame += 1
        for track in self.tracks:
            if track.state == LOST:
                track.mean[6:] = 0.0  # a lost object is not assumed to keep growing or shrinking
            track.mean, track.covariance = self.kalman.predict(track.mean, track.covariance)
        rles = [coco_rle(m) for m in masks]
        assigned: list[Track | None] = [None] * len(boxes)
        result = Association(np.zeros(len(boxes), np.int64))
        free = np.ones(len(boxes), bool)
        high = scores >= cfg.high_score
        low = ~high & (scores >= cfg.low_score)

        confirmed = [t for t in self.tracks if t.state != TENTATIVE]
        matched = self._match(confirmed, np.flatnonzero(high & free), boxes, rles, cfg.match_similarity)
        for track, det in matched:
            if track.state == LOST:
                result.refound.append(track.track_id)
        recent = [t for t in confirmed if t.state == TRACKED and all(t is not m for m, _ in matched)]
        matched += self._match(recent, np.flatnonzero(low), boxes, rles, cfg.low_match_similarity)
        tentative = [t for t in self.tracks if t.state == TENTATIVE]
        matched_tentative = self._match(tentative, np.flatnonzero(high & ~self._taken(matched, len(boxes))), boxes,
                                        rles, cfg.match_similarity)
        for track, det in matched + matched_tentative:
            self._absorb(track, boxes[det], scores[det], rles[det])
            assigned[det] = track
            free[det] = False
        for track, _ in matched_tentative:
            track.state = TRACKED
            track.track_id = self._new_id()
            result.born.append(track.track_id)

        kept = []
        done = {id(t) for t, _ in matched + matched_tentative}
        for track in self.tracks:
            if id(track) not in done:
                if track.state == TENTATIVE:
                    continue
                track.state = LOST
                if self.frame - track.last_frame > cfg.max_lost:
                    continue
            kept.append(track)
        self.tracks = kept
        for det in self._newcomers(np.flatnonzero(free & high & (scores >= cfg.new_track_score)), free, scores, rles):
            track = self._start(boxes[det], scores[det], rles[det], confirm=self.frame == 0)
            assigned[det] = track
            if track.state == TRACKED:
                result.born.append(track.track_id)
        for det, track in enumerate(assigned):
            if track is not None and track.state == TRACKED:
                result.track_ids[det] = track.track_id
        self._detection_tracks = assigned
        self._last = (boxes, scores, rles)
        return result

    def _newcomers(self, candidates: np.ndarray, free: np.ndarray, scores: np.ndarray,
                   rles: list[dict]) -> list[int]:
        """The candidates that start tracks, best score first: not those repeating (mask IoU >= duplicate_iou)
        an instance matched on this frame or a better newcomer. FastSAM often returns a region twice (masks of
        IoU 0.9); a copy would only add an id that trades places with the first from frame to frame."""
        if candidates.size == 0 or self.config.duplicate_iou >= 1.0:
            return candidates.tolist()
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
        others = np.concatenate([np.flatnonzero(~free), candidates])
        overlap = mask_iou([rles[d] for d in candidates], [rles[d] for d in others])
        matched = int((~free).sum())
        kept: list[int] = []
        for row in range(candidates.size):
            columns = np.concatenate([np.arange(matched), matched + np.asarray(kept, np.int64)])
            if not (overlap[row, columns] >= self.config.duplicate_iou).any():
                kept.append(row)
        return sorted(candidates[kept].tolist())

    def promote(self, detection: int) -> int:
        """Give detection ``detection`` of the last frame a confirmed id (confirming its tentative track, or
        starting a track for it when none holds it, even a weak one) and return the id. For a prompt that selects
        an instance the tracker has not confirmed."""
        if not 0 <= detection < len(self._detection_tracks):
            raise InvalidInputError(f"detection {detection} is not one of the last frame's "
                                    f"{len(self._detection_tracks)} detections")
        track = self._detection_tracks[detection]
        if track is None:
            boxes, scores, rles = self._last
            track = self._start(boxes[detection], scores[detection], rles[detection], confirm=True)
            self._detection_tracks[detection] = track
        elif track.state == TENTATIVE:
            track.state = TRACKED
            track.track_id = self._new_id()
        return track.track_id

    def _taken(self, matched: list[tuple[Track, int]], count: int) -> np.ndarray:
        taken = np.zeros(count, bool)
        taken[[det for _, det in matched]] = True
        return taken

    def _match(self, tracks: list[Track], detections: np.ndarray, boxes: np.ndarray, rles: list[dict],
               threshold: float) -> list[tuple[Track, int]]:
        if not tracks or detections.size == 0:
            return []
        similarity = self.similarity(tracks, boxes[detections], [rles[d] for d in detections])
        return [(tracks[row], int(detections[col])) for row, col in greedy_match(similarity, threshold)]

    def similarity(self, tracks: Sequence[Track], boxes: np.ndarray, rles: Sequence[dict]) -> np.ndarray:
        """(T, D) blended box / mask IoU of tracks (their predicted boxes, last masks) and detections."""
        w = self.config.box_weight
        boxes_iou = box_iou(np.stack([t.box for t in tracks]), boxes)
        if w >= 1.0:
            return boxes_iou
        return w * boxes_iou + (1.0 - w) * mask_iou([t.mask for t in tracks], rles)

    def _absorb(self, track: Track, box: np.ndarray, score: float, rle: dict) -> None:
        track.mean, track.covariance = self.kalman.update(track.mean, track.covariance, xyxy_to_cxcywh(box))
        track.mask, track.score = rle, float(score)
        track.last_frame, track.hits = self.frame, track.hits + 1
        if track.state == LOST:
            track.state = TRACKED

    def _start(self, box: np.ndarray, score: float, rle: dict, confirm: bool) -> Track:
        mean, covariance = self.kalman.initiate(xyxy_to_cxcywh(box))
        track = Track(self._new_id() if confirm else 0, mean, covariance, rle, float(score),
                      TRACKED if confirm else TENTATIVE, self.frame, self.frame)
        self.tracks.append(track)
        return track

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    # ------------------------------------------------------------------------------------------ queries
    def track(self, track_id: int) -> Track | None:
        """The live (tracked or lost) track of ``track_id``, or None once it has been dropped."""
        for track in self.tracks:
            if track.track_id == track_id and track.state != TENTATIVE:
                return track
        return None

    # ------------------------------------------------------------------------------------------- resume
    def to_dict(self) -> dict:
        """JSON-ready state (for resuming a run); the last frame's detections are not kept."""
        return {"frame": self.frame, "next_id": self.next_id, "tracks": [t.to_dict() for t in self.tracks]}

    def load_dict(self, data: dict) -> None:
        """Restore :meth:`to_dict`'s state."""
        self.frame, self.next_id = int(data["frame"]), int(data["next_id"])
        self.tracks = [Track.from_dict(t) for t in data["tracks"]]
        self._detection_tracks = []
        self._last = (np.zeros((0, 4)), np.zeros(0), [])
