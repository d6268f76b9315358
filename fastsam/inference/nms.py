"""Non-maximum suppression in plain PyTorch (no torchvision)."""

from __future__ import annotations

import numpy as np
import torch
from numba import njit


def box_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one xyxy box (4,) with boxes (N, 4) -> (N,). Areas are (x2 - x1) * (y2 - y1), no +1."""
    inter_w = (torch.minimum(box[2], boxes[:, 2]) - torch.maximum(box[0], boxes[:, 0])).clamp(min=0)
    inter_h = (torch.minimum(box[3], boxes[:, 3]) - torch.maximum(box[1], boxes[:, 1])).clamp(min=0)
    inter = inter_w * inter_h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


@njit(cache=True, nogil=True)
def _greedy_keep(boxes: np.ndarray, limit: int, iou_threshold: float) -> np.ndarray:
    """Indices (into score-sorted ``boxes``, (N, 4) float32 xyxy) kept by greedy NMS, at most ``limit``. Each
    kept box suppresses the later boxes it overlaps by more than the threshold; IoU in float32 with
    torchvision's formula, inter / (area_i + area_j - inter)."""
    n = boxes.shape[0]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    removed = np.zeros(n, np.bool_)
    keep = np.empty(min(n, limit), np.int64)
    kept = 0
    threshold = np.float32(iou_threshold)
    zero = np.float32(0.0)
    for i in range(n):
        if kept >= limit:
            break
        if removed[i]:
            continue
        keep[kept] = i
        kept += 1
        x1, y1, x2, y2, area = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3], areas[i]
        for j in range(i + 1, n):
            if removed[j]:
                continue
            inter_w = max(min(x2, boxes[j, 2]) - max(x1, boxes[j, 0]), zero)
            inter_h = max(min(y2, boxes[j, 3]) - max(y1, boxes[j, 1]), zero)
            inter = inter_w * inter_h
            if inter / (area + areas[j] - inter) > threshold:
                removed[j] = True
    return keep[:kept]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_keep: int | None = None
        ) -> torch.Tensor:
    """Greedy NMS. boxes (N, 4) xyxy, scores (N,). Returns kept indices, highest score first.

    A box is dropped when its IoU with a kept, higher-scoring box exceeds ``iou_threshold`` (ties in score
    keep input order). Stopping after ``max_keep`` boxes gives the same first ``max_keep`` as a full run. The
    compiled loop only compares kept boxes with the candidates still standing, O(kept x N) instead of a full
    N x N IoU matrix (at a validation threshold of conf 0.001, N is every anchor).
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"nms expects boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = np.ascontiguousarray(boxes[order].float().numpy())
    limit = sorted_boxes.shape[0] if max_keep is None else max(0, int(max_keep))
    keep = _greedy_keep(sorted_boxes, limit, float(iou_threshold))
    return order[torch.from_numpy(keep)]
