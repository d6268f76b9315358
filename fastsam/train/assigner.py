"""Task-aligned label assignment (TOOD, as in YOLOv8): which anchors learn which ground-truth instance.

For every ground-truth box, the candidate anchors are those whose centre lies inside it; each candidate is
scored by ``align = score ** alpha * CIoU ** beta`` (score: the predicted probability of the box's class,
CIoU between the predicted and the ground-truth box, clamped at 0). The ``topk`` best candidates per box become
positives; an anchor claimed by several boxes keeps the one it overlaps most. Target scores are the one-hot
class scaled, per box, so that its best positive gets the box's best IoU (the normalised alignment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def box_ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of paired boxes (..., 4) xyxy -> (...): IoU minus the normalised centre distance and an
    aspect-ratio consistency term (Zheng et al. 2020). 1 for identical boxes, in (-1, 1]."""
    b1x1, b1y1, b1x2, b1y2 = box1.unbind(-1)
    b2x1, b2y1, b2x2, b2y2 = box2.unbind(-1)
    w1, h1 = b1x2 - b1x1, (b1y2 - b1y1).clamp(min=0) + eps
    w2, h2 = b2x2 - b2x1, (b2y2 - b2y1).clamp(min=0) + eps
    inter = (torch.minimum(b1x2, b2x2) - torch.maximum(b1x1, b2x1)).clamp(min=0) * (
        torch.minimum(b1y2, b2y2) - torch.maximum(b1y1, b2y1)).clamp(min=0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    hull_w = torch.maximum(b1x2, b2x2) - torch.minimum(b1x1, b2x1)
    hull_h = torch.maximum(b1y2, b2y2) - torch.minimum(b1y1, b2y1)
    hull_diag2 = hull_w ** 2 + hull_h ** 2 + eps
    centre_dist2 = ((b2x1 + b2x2 - b1x1 - b1x2) ** 2 + (b2y1 + b2y2 - b1y1 - b1y2) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():  # the trade-off weight is a constant in CIoU's gradient
        alpha = v / (v - iou + (1 + eps))
    return iou - (centre_dist2 / hull_diag2 + v * alpha)


@dataclass
class Assignment:
    """Per anchor (B images, A anchors): target_boxes (B, A, 4) xyxy in the units of the inputs,
    target_scores (B, A, nc) in [0, 1], fg_mask (B, A) bool (positives), gt_index (B, A) int64 (which of the
    image's ground truths; meaningful where fg_mask)."""

    target_boxes: torch.Tensor
    target_scores: torch.Tensor
    fg_mask: torch.Tensor
    gt_index: torch.Tensor


class TaskAlignedAssigner:
    """Task-aligned assigner with YOLOv8's settings (topk 10, alpha 0.5, beta 6)."""

    def __init__(self, num_classes: int = 1, topk: int = 10, alpha: float = 0.5, beta: float = 6.0,
                 eps: float = 1e-9) -> None:
        self.num_classes, self.topk, self.alpha, self.beta, self.eps = num_classes, topk, alpha, beta, eps

    @torch.no_grad()
    def __call__(self, pred_scores: torch.Tensor, pred_boxes: torch.Tensor, anchor_points: torch.Tensor,
                 gt_labels: torch.Tensor, gt_boxes: torch.Tensor, gt_valid: torch.Tensor) -> Assignment:
        """pred_scores (B, A, nc) probabilities; pred_boxes (B, A, 4) xyxy; anchor_points (A, 2) xy (same units
        as the boxes); gt_labels (B, M) int64; gt_boxes (B, M, 4) xyxy; gt_valid (B, M) bool (padding False)."""
        b, a, _ = pred_scores.shape
        m = gt_boxes.shape[1]
        device = pred_scores.device
        if m == 0 or not bool(gt_valid.any()):
            return Assignment(torch.zeros_like(pred_boxes), torch.zeros_like(pred_scores),
                              torch.zeros(b, a, dtype=torch.bool, device=device),
                              torch.zeros(b, a, dtype=torch.long, device=device))
        pred_scores, pred_boxes, gt_boxes = pred_scores.float(), pred_boxes.float(), gt_boxes.float()
        in_gt = self._centres_inside(anchor_points.float(), gt_boxes) & gt_valid.unsqueeze(-1)  # (B, M, A)

        # Only the candidates (a few % of the (B, M, A) pairs) are scored; everything else stays zero.
        bi, mi, ai = in_gt.nonzero(as_tuple=True)
        candidate_overlaps = box_ciou(gt_boxes[bi, mi], pred_boxes[bi, ai]).clamp(min=0)
        candidate_scores = pred_scores[bi, ai, gt_labels[bi, mi]]
        overlaps = torch.zeros(b, m, a, device=device)
        overlaps[bi, mi, ai] = candidate_overlaps
        align = torch.zeros(b, m, a, device=device)
        align[bi, mi, ai] = candidate_scores.pow(self.alpha) * candidate_overlaps.pow(self.beta)

        positive = self._topk(align) & in_gt
        positive, gt_index, fg_mask = self._resolve_multiple(positive, overlaps)

        batch_offsets = torch.arange(b, device=device).unsqueeze(-1) * m
        flat = (gt_index + batch_offsets).view(-1)
        target_boxes = gt_boxes.view(-1, 4)[flat].view(b, a, 4)
        labels = gt_labels.reshape(-1)[flat].view(b, a).clamp(min=0)
        target_scores = torch.nn.functional.one_hot(labels, self.num_classes).float()
        target_scores *= fg_mask.unsqueeze(-1)

        align = align * positive
        best_align = align.amax(-1, keepdim=True)  # (B, M, 1)
        best_overlap = (overlaps * positive).amax(-1, keepdim=True)
        normalised = (align * best_overlap / (best_align + self.eps)).amax(-2).unsqueeze(-1)  # (B, A, 1)
        return Assignment(target_boxes, target_scores * normalised, fg_mask, gt_index)

    def _centres_inside(self, points: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
        """(A, 2) points, (B, M, 4) boxes -> (B, M, A) bool: point strictly inside the box."""
        # Four (B, M, A) comparisons rather than a (B, M, A, 4) tensor and its minimum: the same test.
        px, py = points[:, 0].view(1, 1, -1), points[:, 1].view(1, 1, -1)
        x1, y1, x2, y2 = (gt_boxes[..., k, None] for k in range(4))
        return (px - x1 > self.eps) & (py - y1 > self.eps) & (x2 - px > self.eps) & (y2 - py > self.eps)

    def _topk(self, align: torch.Tensor) -> torch.Tensor:
        """(B, M, A) metric -> (B, M, A) bool: the topk largest per box (the caller keeps only candidates)."""
        index = align.topk(min(self.topk, align.shape[-1]), dim=-1).indices
        return torch.zeros_like(align, dtype=torch.bool).scatter_(-1, index, True)

    @staticmethod
    def _resolve_multiple(positive: torch.Tensor, overlaps: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """An anchor positive for several boxes keeps only its highest-overlap box. Returns the cleaned (B, M, A)
        mask, the chosen box index (B, A) and the foreground mask (B, A)."""
        claims = positive.sum(-2)  # (B, A)
        contested = claims > 1
        if bool(contested.any()):
            best = torch.nn.functional.one_hot(overlaps.argmax(-2), positive.shape[1]).permute(0, 2, 1).bool()
            positive = torch.where(contested.unsqueeze(1), best, positive)
        return positive, positive.float().argmax(-2), positive.any(-2)
