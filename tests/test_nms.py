"""NMS against a plain reference of torchvision's greedy algorithm."""

from __future__ import annotations

import pytest
import torch

from fastsam.inference.nms import box_iou, nms


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    keep: list[int] = []
    for i in order:
        if all(float(box_iou(boxes[k], boxes[i:i + 1])[0]) <= threshold for k in keep):
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
