"""Non-maximum suppression in plain PyTorch (no torchvision)."""

from __future__ import annotations

import numpy as np
import torch


def box_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one xyxy box (4,) with boxes (N, 4) -> (N,). Areas are (x2 - x1) * (y2 - y1), no +1."""
    inter_w = (torch.minimum(box[2], boxes[:, 2]) - torch.maximum(box[0], boxes[:, 0])).clamp(min=0)
    inter_h = (torch.minimum(box[3], boxes[:, 3]) - torch.maximum(box[1], boxes[:, 1])).clamp(min=0)
    inter = inter_w * inter_h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def _iou_rows(block: np.ndarray, boxes: np.ndarray, areas: np.ndarray, block_areas: np.ndarray) -> np.ndarray:
    """(B, N) IoU of a block of xyxy boxes with all boxes, float32, torchvision's formula."""
    inter_w = np.clip(np.minimum(block[:, None, 2], boxes[None, :, 2]) - np.maximum(block[:, None, 0], boxes[None, :, 0]), 0, None)
    inter_h = np.clip(np.minimum(block[:, None, 3], boxes[None, :, 3]) - np.maximum(block[:, None, 1], boxes[None, :, 1]), 0, None)
    inter = inter_w * inter_h
    return inter / (block_areas[:, None] + areas[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_keep: int | None = None,
        block_size: int = 256) -> torch.Tensor:
    """Greedy NMS. boxes (N, 4) xyxy, scores (N,). Returns kept indices, highest score first.

    A box is dropped when its IoU with a kept, higher-scoring box exceeds ``iou_threshold`` (ties in score
    keep input order). Stopping after ``max_keep`` boxes gives the same first ``max_keep`` as a full run.
    IoUs are computed a block of candidates at a time against all, so memory stays at block_size x N.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"nms expects boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order].float().numpy()
    n = sorted_boxes.shape[0]
    areas = (sorted_boxes[:, 2] - sorted_boxes[:, 0]) * (sorted_boxes[:, 3] - sorted_boxes[:, 1])
    limit = n if max_keep is None else max_keep
    removed = np.zeros(n, bool)
    keep: list[int] = []
    for block_start in range(0, n, block_size):
        if len(keep) >= limit:
            break
        block_end = min(block_start + block_size, n)
        if removed[block_start:block_end].all():
            continue
        suppress = _iou_rows(sorted_boxes[block_start:block_end], sorted_boxes, areas, areas[block_start:block_end]) > iou_threshold
        for row in range(block_end - block_start):
            i = block_start + row
            if removed[i]:
                continue
            keep.append(i)
            if len(keep) >= limit:
                break
            removed |= suppress[row]
    return order[torch.tensor(keep, dtype=torch.long)]
