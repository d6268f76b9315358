"""Non-maximum suppression in plain PyTorch (no torchvision)."""

from __future__ import annotations

import torch


def box_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one xyxy box (4,) with boxes (N, 4) -> (N,). Areas are (x2 - x1) * (y2 - y1), no +1."""
    inter_w = (torch.minimum(box[2], boxes[:, 2]) - torch.maximum(box[0], boxes[:, 0])).clamp(min=0)
    inter_h = (torch.minimum(box[3], boxes[:, 3]) - torch.maximum(box[1], boxes[:, 1])).clamp(min=0)
    inter = inter_w * inter_h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_keep: int | None = None) -> torch.Tensor:
    """Greedy NMS. boxes (N, 4) xyxy, scores (N,). Returns kept indices, highest score first.

    A box is dropped when its IoU with a kept, higher-scoring box exceeds ``iou_threshold`` (ties in score
    keep input order). Stopping after ``max_keep`` boxes gives the same first ``max_keep`` as a full run.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"nms expects boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes[order]
    alive = torch.ones(len(order), dtype=torch.bool)
    keep: list[int] = []
    limit = len(order) if max_keep is None else max_keep
    candidates = torch.arange(len(order))
    while candidates.numel() and len(keep) < limit:
        best = int(candidates[0])
        keep.append(best)
        rest = candidates[1:]
        if rest.numel() == 0:
            break
        overlap = box_iou(boxes[best], boxes[rest])
        alive[rest[overlap > iou_threshold]] = False
        candidates = rest[alive[rest]]
    return order[torch.tensor(keep, dtype=torch.long)]
