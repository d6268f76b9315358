"""NMS against a plain reference of torchvision's greedy algorithm."""

from __future__ import annotations

import pytest
import torch

from fastsam.inference.nms import box_iou, nms


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    # torchvision's rule: suppressed when an IoU with a kept box is > threshold (a NaN IoU suppresses nothing).
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    keep: list[int] = []
    for i in order:
        if not keep or not bool((box_iou(boxes[i], boxes[keep]) > threshold).any()):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed,n,threshold", [(0, 50, 0.5), (1, 400, 0.9), (2, 700, 0.3), (3, 5, 0.0)])
def test_matches_reference(seed, n, threshold):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 200
    wh = torch.rand(n, 2, generator=gen) * 60 + 1
    boxes = torch.cat((xy, xy + wh), 1)
    boxes[n // 2:] = boxes[: n - n // 2] + torch.rand(n - n // 2, 4, generator=gen)  # near-duplicates
    scores = torch.rand(n, generator=gen)
    scores[:3] = scores[3]  # ties keep input order
    expected = reference_nms(boxes, scores, threshold)
    assert nms(boxes, scores, threshold).tolist() == expected
    assert nms(boxes, scores, threshold, max_keep=7).tolist() == expected[:7]


def test_empty_and_bad_shapes():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    with pytest.raises(ValueError):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)


def test_empty_boxes_at_one_spot_are_both_kept():
    # Their union is zero: the IoU is NaN (0 / 0) as in torch, which suppresses nothing.
    boxes = torch.tensor([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == reference_nms(boxes, scores, 0.5) == [0, 1, 2]


@pytest.mark.parametrize("threshold", [0.9, 0.5])
def test_many_candidates_match_reference(threshold):
    # Thousands of jittered copies of a few hundred boxes, as at conf 0.001: the vectorised loop over every later
    # box (suppressed ones included) must keep exactly what the greedy reference keeps, in order.
    gen = torch.Generator().manual_seed(4)
    centres = torch.rand(300, 2, generator=gen) * 1000
    sizes = torch.rand(300, 2, generator=gen) * 400 + 2
    pick = torch.randint(0, 300, (3000,), generator=gen)
    centre = centres[pick] + torch.randn(3000, 2, generator=gen) * 3
    size = sizes[pick] * (0.95 + 0.1 * torch.rand(3000, 2, generator=gen))
    boxes = torch.cat((centre - size / 2, centre + size / 2), 1)
    scores = torch.rand(3000, generator=gen)
    expected = reference_nms(boxes, scores, threshold)
    assert 100 < len(expected) < 3000
    assert nms(boxes, scores, threshold).tolist() == expected
    assert nms(boxes, scores, threshold, max_keep=150).tolist() == expected[:150]
    # Given best first (as select_detections does), with ties, it skips its own sort and keeps the same boxes.
    scores = torch.round(scores * 20) / 20
    order = torch.sort(scores, descending=True, stable=True).indices
    expected = reference_nms(boxes[order], scores[order], threshold)
    assert nms(boxes[order], scores[order], threshold).tolist() == expected
