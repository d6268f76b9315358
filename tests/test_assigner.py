"""Task-aligned assigner and CIoU on hand-made cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from fastsam.train.assigner import TaskAlignedAssigner, box_ciou


def test_ciou_of_identical_boxes_is_one() -> None:
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [5.0, 1.0, 9.0, 12.0]])
    assert torch.allclose(box_ciou(boxes, boxes), torch.ones(2), atol=1e-5)


def test_ciou_of_shifted_square_subtracts_centre_distance() -> None:
    # IoU 2/6; hull 3 x 2 (diagonal^2 13); centres 1 apart; same aspect, so no shape term.
    value = box_ciou(torch.tensor([0.0, 0.0, 2.0, 2.0]), torch.tensor([1.0, 0.0, 3.0, 2.0]))
    assert value.item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-5)


def test_ciou_aspect_term_for_concentric_boxes() -> None:
    # Same centre, IoU 4/8 = 0.5, aspect ratios 2:1 and 1:1.
    v = 4 / math.pi ** 2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    expected = 0.5 - v * v / (v - 0.5 + 1)
    value = box_ciou(torch.tensor([0.0, 0.0, 4.0, 2.0]), torch.tensor([1.0, 0.0, 3.0, 2.0]))
    assert value.item() == pytest.approx(expected, abs=1e-5)


def test_ciou_of_far_apart_boxes_is_negative() -> None:
    assert box_ciou(torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([10.0, 10.0, 11.0, 11.0])).item() < 0


def _grid(points: list[tuple[float, float]]) -> torch.Tensor:
    return torch.tensor(points, dtype=torch.float32)


def test_assigner_takes_the_topk_best_scored_anchors_inside_the_box() -> None:
    anchors = _grid([(1, 1), (3, 3), (5, 5), (7, 7), (20, 20)])  # the last one lies outside the box
    gt = torch.tensor([[[0.0, 0.0, 8.0, 8.0]]])
    pred_boxes = gt.expand(1, 5, 4).clone()  # every anchor predicts the box exactly (IoU 1)
    pred_scores = torch.tensor([[[0.2], [0.9], [0.5], [0.1], [0.99]]])
    out = TaskAlignedAssigner(topk=2)(pred_scores, pred_boxes, anchors, torch.zeros(1, 1, dtype=torch.long), gt,
                                      torch.ones(1, 1, dtype=torch.bool))
    assert out.fg_mask.tolist() == [[False, True, True, False, False]]
    # Normalised alignment: the best positive gets the best IoU (1), the other (0.5 / 0.9) ** 0.5 of it.
    expected = torch.tensor([0.0, 1.0, (0.5 / 0.9) ** 0.5, 0.0, 0.0])
    assert torch.allclose(out.target_scores[0, :, 0], expected, atol=1e-5)
    assert torch.equal(out.target_boxes[0, 1], gt[0, 0])


def test_assigner_gives_a_contested_anchor_to_the_box_it_overlaps_most() -> None:
    anchors = _grid([(4, 4)])
    gts = torch.tensor([[[0.0, 0.0, 8.0, 8.0], [2.0, 2.0, 10.0, 10.0]]])
    pred = torch.tensor([[[2.0, 2.0, 10.0, 10.0]]])  # equals the second box
    out = TaskAlignedAssigner(topk=10)(torch.full((1, 1, 1), 0.5), pred, anchors,
                                       torch.zeros(1, 2, dtype=torch.long), gts, torch.ones(1, 2, dtype=torch.bool))
    assert out.fg_mask.tolist() == [[True]]
    assert out.gt_index.tolist() == [[1]]
    assert torch.equal(out.target_boxes[0, 0], gts[0, 1])


def test_assigner_ignores_padding_and_handles_images_without_instances() -> None:
    anchors = _grid([(1, 1), (3, 3)])
    gts = torch.tensor([[[0.0, 0.0, 4.0, 4.0]], [[0.0, 0.0, 4.0, 4.0]]])
    valid = torch.tensor([[True], [False]])  # the second image has no instance, only padding
    out = TaskAlignedAssigner()(torch.full((2, 2, 1), 0.5), gts.expand(2, 2, 4).clone(), anchors,
                                torch.zeros(2, 1, dtype=torch.long), gts, valid)
    assert out.fg_mask[0].all() and not out.fg_mask[1].any()
    assert out.target_scores[1].abs().sum() == 0

    empty = TaskAlignedAssigner()(torch.rand(1, 2, 1), torch.rand(1, 2, 4), anchors,
                                  torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0, 4),
                                  torch.zeros(1, 0, dtype=torch.bool))
    assert not empty.fg_mask.any() and empty.target_scores.sum() == 0
