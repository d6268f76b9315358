"""The instance tracker on synthetic boxes and masks: births, occlusion then re-found with the same id, crossing
objects keeping their ids, the weak-detection pass, and the state round trip used for resuming."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastsam.errors import InvalidInputError
from fastsam.rle import RunLengthMask
from fastsam.video.tracker import BoxKalman, InstanceTracker, TrackerConfig, box_iou, greedy_match

H, W = 240, 400


def rect(x1: float, y1: float, x2: float, y2: float) -> RunLengthMask:
    x1, y1, x2, y2 = (int(round(v)) for v in (x1, y1, x2, y2))
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, W), min(y2, H)
    return RunLengthMask.from_crop(np.ones((y2 - y1, x2 - x1), bool), x1, y1, H, W)


def step(tracker: InstanceTracker, boxes: list[list[float]], scores: list[float] | None = None) -> list[int]:
    scores = [0.9] * len(boxes) if scores is None else scores
    masks = [rect(*b) for b in boxes]
    return tracker.update(np.array(boxes, np.float64).reshape(-1, 4), np.array(scores), masks).track_ids.tolist()


def test_births_get_new_ids_and_tentative_tracks_wait_a_frame() -> None:
    tracker = InstanceTracker()
    assert step(tracker, [[10, 10, 60, 60]]) == [1]  # the first frame confirms at once
    assert step(tracker, [[12, 10, 62, 60], [200, 100, 260, 180]]) == [1, 0]  # a newcomer is tentative
    assert step(tracker, [[14, 10, 64, 60], [202, 100, 262, 180]]) == [1, 2]  # ... confirmed on its second frame
    assert step(tracker, [[16, 10, 66, 60], [204, 100, 264, 180], [300, 20, 330, 60]]) == [1, 2, 0]
    assert step(tracker, [[18, 10, 68, 60], [206, 100, 266, 180]]) == [1, 2]  # a one-frame flicker used no id
    assert tracker.next_id == 3


def test_occluded_object_is_refound_with_its_id() -> None:
    tracker = InstanceTracker()
    ids = []
    for t in range(25):
        moving = [20 + 6 * t, 50, 80 + 6 * t, 110]
        boxes = [[300, 150, 360, 220]] + ([moving] if not 8 <= t < 14 else [])  # hidden for six frames
        ids.append(step(tracker, boxes))
    assert all(frame[0] == 1 for frame in ids)
    assert all(frame[1] == 2 for t, frame in enumerate(ids) if not 8 <= t < 14)
    assert tracker.next_id == 3  # no new id for the returning object


def test_refound_reported_and_lost_too_long_gets_a_new_id() -> None:
    tracker = InstanceTracker(TrackerConfig(max_lost=3))
    step(tracker, [[50, 50, 100, 100]])
    step(tracker, [[52, 50, 102, 100]])
    step(tracker, [])
    association = tracker.update(np.array([[56, 50, 106, 100]], float), np.array([0.9]), [rect(56, 50, 106, 100)])
    assert association.track_ids.tolist() == [1] and association.refound == [1]
    for _ in range(5):  # gone longer than max_lost: the track is dropped
        step(tracker, [])
    assert tracker.track(1) is None
    step(tracker, [[70, 50, 120, 100]])
    assert step(tracker, [[72, 50, 122, 100]]) == [2]


def test_crossing_objects_keep_their_ids() -> None:
    tracker = InstanceTracker()
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for t in range(30):
        right = [20 + 10 * t, 60, 80 + 10 * t, 140]  # 60 x 80, moving right
        left = [330 - 10 * t, 90, 380 - 10 * t, 150]  # 50 x 60, moving left; overlaps the other at mid-way
        for which, track_id in enumerate(step(tracker, [right, left])):
            seen[which].add(track_id)
    assert seen == {0: {1}, 1: {2}}


def test_nested_masks_with_one_box_are_told_apart_by_their_masks() -> None:
    # A whole (filled box) and its left half share most of a box; the mask term keeps them apart.
    tracker = InstanceTracker()
    whole_ids, half_ids = set(), set()
    for t in range(10):
        x = 40 + 3 * t
        boxes = np.array([[x, 40, x + 100, 140], [x, 40, x + 100, 140]], np.float64)
        half = RunLengthMask.from_crop(np.ones((100, 45), bool), x, 40, H, W)
        order = [0, 1] if t % 2 else [1, 0]  # detections come in either order
        masks = [rect(*boxes[0]), half]
        ids = tracker.update(boxes[order], np.array([0.9, 0.8])[order], [masks[k] for k in order]).track_ids
        whole_ids.add(int(ids[order.index(0)]))
        half_ids.add(int(ids[order.index(1)]))
    assert len(whole_ids) == len(half_ids) == 1 and whole_ids != half_ids and 0 not in whole_ids | half_ids


def test_weak_detections_keep_a_track_alive_but_start_none() -> None:
    tracker = InstanceTracker(TrackerConfig(high_score=0.5, low_score=0.1, new_track_score=0.5))
    assert step(tracker, [[10, 10, 60, 60]], [0.9]) == [1]
    assert step(tracker, [[12, 10, 62, 60], [200, 100, 260, 180]], [0.3, 0.3]) == [1, 0]
    assert step(tracker, [[14, 10, 64, 60], [202, 100, 262, 180]], [0.3, 0.3]) == [1, 0]
    assert step(tracker, [[16, 10, 66, 60]], [0.05]) == [0]  # below low_score: ignored, the track is lost
    assert tracker.track(1).state == "lost"
    assert step(tracker, [[18, 10, 68, 60]], [0.3]) == [0]  # a weak detection does not re-find a lost track
    assert step(tracker, [[20, 10, 70, 60]], [0.9]) == [1]


def test_promote_gives_an_unconfirmed_detection_an_id() -> None:
    tracker = InstanceTracker(TrackerConfig(high_score=0.5, low_score=0.1, new_track_score=0.5))
    step(tracker, [[10, 10, 60, 60]])
    assert step(tracker, [[12, 10, 62, 60], [200, 100, 260, 180], [300, 20, 340, 60]], [0.9, 0.9, 0.05]) == [1, 0, 0]
    assert tracker.promote(1) == 2  # tentative -> confirmed
    assert tracker.promote(2) == 3  # below low_score: a track is started for it
    assert step(tracker, [[14, 10, 64, 60], [202, 100, 262, 180], [302, 20, 342, 60]]) == [1, 2, 3]
    with pytest.raises(InvalidInputError, match="detection 7"):
        tracker.promote(7)


def test_state_round_trip_continues_identically() -> None:
    def frames():
        for t in range(20):
            yield [[20 + 6 * t, 50, 80 + 6 * t, 110], [300 - 4 * t, 120, 350 - 4 * t, 200]][: 1 if 5 <= t < 9 else 2]

    straight = InstanceTracker()
    expected = [step(straight, boxes) for boxes in frames()]
    first, resumed = InstanceTracker(), InstanceTracker()
    got = []
    for t, boxes in enumerate(frames()):
        if t == 7:  # mid-occlusion, with a lost track in the state
            resumed.load_dict(json.loads(json.dumps(first.to_dict())))
        got.append(step(resumed if t >= 7 else first, boxes))
    assert got == expected


def test_kalman_learns_a_constant_velocity() -> None:
    kalman = BoxKalman()
    mean, cov = kalman.initiate(np.array([100.0, 50.0, 40.0, 20.0]))
    for t in range(1, 12):
        mean, cov = kalman.predict(mean, cov)
        mean, cov = kalman.update(mean, cov, np.array([100.0 + 5 * t, 50.0 - 2 * t, 40.0, 20.0]))
    mean, _ = kalman.predict(mean, cov)
    np.testing.assert_allclose(mean[:4], [160.0, 26.0, 40.0, 20.0], atol=1.0)


def test_helpers_and_bad_input() -> None:
    np.testing.assert_allclose(box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]]), [[1 / 3, 0.0]])
    assert greedy_match(np.array([[0.9, 0.8], [0.85, 0.1]]), 0.5) == [(0, 0)]
    assert greedy_match(np.array([[0.9, 0.8], [0.85, 0.6]]), 0.5) == [(0, 0), (1, 1)]
    with pytest.raises(InvalidInputError, match="high_score"):
        TrackerConfig(high_score=1.5)
    with pytest.raises(InvalidInputError, match="above high_score"):
        TrackerConfig(high_score=0.2, low_score=0.3)
    with pytest.raises(InvalidInputError, match="max_lost"):
        TrackerConfig(max_lost=-1)
    with pytest.raises(InvalidInputError, match="one of each"):
        InstanceTracker().update(np.zeros((2, 4)), np.zeros(1), [])


def test_a_repeated_mask_starts_no_track() -> None:
    tracker = InstanceTracker()
    whole = [40, 40, 140, 140]
    almost = RunLengthMask.from_crop(np.ones((100, 95), bool), 40, 40, H, W)  # IoU 0.95 with the whole box
    boxes = np.array([whole, whole, [250, 50, 300, 120]], np.float64)
    masks = [rect(*whole), almost, rect(250, 50, 300, 120)]
    for _ in range(3):  # on the first frame and later ones, the copy gets no id
        ids = tracker.update(boxes, np.array([0.9, 0.8, 0.7]), masks).track_ids.tolist()
        assert ids == [1, 0, 2]
    assert tracker.promote(1) == 3  # a prompt may still ask for it
    loose = InstanceTracker(TrackerConfig(duplicate_iou=1.0))
    assert loose.update(boxes, np.array([0.9, 0.8, 0.7]), masks).track_ids.tolist() == [1, 2, 3]
