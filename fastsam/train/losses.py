"""The YOLOv8-seg training loss, class-agnostic as FastSAM trains it.

Four terms, each normalised like YOLOv8's: CIoU box loss and distribution focal loss (DFL) weighted by the
assigned target scores, BCE class loss over every anchor divided by the target-score sum, and a per-instance
mask loss (coefficients @ prototypes vs the instance's own binary mask, ``overlap_mask`` off), cropped to the
ground-truth box and divided by the box's normalised area. Gains: box 7.5, mask 7.5 (as box), cls 0.5, dfl 1.5.
The total is multiplied by the batch size (the optimiser's weight decay is scaled to match).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fastsam.errors import InvalidInputError
from fastsam.model.head import STRIDES, HeadOutput, anchor_grid
from fastsam.train.assigner import TaskAlignedAssigner, box_ciou

LOSS_NAMES = ("box", "mask", "cls", "dfl")


@dataclass(frozen=True)
class LossGains:
    """Multipliers of the four loss terms (YOLOv8 defaults; the mask term uses ``box``)."""

    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5


def distances_to_boxes(points: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """(..., 2) anchor points and (..., 4) left/top/right/bottom distances -> (..., 4) xyxy boxes."""
    return torch.cat((points - distances[..., :2], points + distances[..., 2:]), -1)


def boxes_to_distances(points: torch.Tensor, boxes: torch.Tensor, max_distance: float) -> torch.Tensor:
    """Inverse of :func:`distances_to_boxes`, clamped to [0, max_distance - 0.01] so the DFL's upper bin exists."""
    ltrb = torch.cat((points - boxes[..., :2], boxes[..., 2:] - points), -1)
    return ltrb.clamp(0, max_distance - 0.01)


def distribution_focal_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """DFL (Li et al. 2020): (N, 4, reg_max) bin logits, (N, 4) continuous targets in bins -> (N,) loss, the
    cross-entropy to the two bins around each target weighted by proximity, averaged over the 4 sides."""
    left = targets.long()
    right = left + 1
    weight_left = right.float() - targets
    reg_max = logits.shape[-1]
    flat = logits.reshape(-1, reg_max)
    ce_left = F.cross_entropy(flat, left.reshape(-1), reduction="none").view_as(targets)
    ce_right = F.cross_entropy(flat, right.clamp(max=reg_max - 1).reshape(-1), reduction="none").view_as(targets)
    return (ce_left * weight_left + ce_right * (1 - weight_left)).mean(-1)


def pad_targets(batch_idx: torch.Tensor, boxes: torch.Tensor, batch_size: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat targets -> per image, padded to the most crowded image: boxes (B, M, 4), valid (B, M) bool, and the
    row of each in the flat list (B, M) int64 (0 for padding)."""
    counts = torch.bincount(batch_idx, minlength=batch_size) if batch_idx.numel() else torch.zeros(
        batch_size, dtype=torch.long, device=boxes.device)
    m = int(counts.max()) if counts.numel() else 0
    padded = torch.zeros(batch_size, m, 4, device=boxes.device, dtype=boxes.dtype)
    valid = torch.zeros(batch_size, m, dtype=torch.bool, device=boxes.device)
    rows = torch.zeros(batch_size, m, dtype=torch.long, device=boxes.device)
    if batch_idx.numel():
        order = torch.argsort(batch_idx, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(order), device=boxes.device) - starts[batch_idx[order]]
        padded[batch_idx[order], slot] = boxes[order]
        valid[batch_idx[order], slot] = True
        rows[batch_idx[order], slot] = order
    return padded, valid, rows


class SegmentationLoss:
    """Loss of :class:`fastsam.model.yolov8_seg.YoloV8Seg` in train mode.

    ``loss(out, batch)`` with ``out`` the raw :class:`HeadOutput` and ``batch`` from
    :func:`fastsam.train.data.collate_batch` (``images`` (B, 3, S, S), ``batch_idx`` (M,), ``boxes`` (M, 4) xyxy
    input pixels, ``masks`` (M, S/r, S/r)) returns ``(total, items)``: the total (scalar, times the batch size,
    to back-propagate) and the four weighted terms (4,) detached, in :data:`LOSS_NAMES` order.
    """

    def __init__(self, num_classes: int = 1, reg_max: int = 16, gains: LossGains = LossGains(), topk: int = 10
                 ) -> None:
        if num_classes < 1 or reg_max < 2:
            raise InvalidInputError(f"need num_classes >= 1 and reg_max >= 2, got {num_classes}, {reg_max}")
        self.num_classes, self.reg_max, self.gains = num_classes, reg_max, gains
        self.assigner = TaskAlignedAssigner(num_classes=num_classes, topk=topk)

    def __call__(self, out: HeadOutput, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        protos = out.protos.float()
        b = protos.shape[0]
        shapes = [tuple(t.shape[2:]) for t in out.box_logits]

        def flatten(maps: list[torch.Tensor]) -> torch.Tensor:  # per-level (B, C, h, w) -> (B, A, C)
            return torch.cat([t.flatten(2) for t in maps], 2).permute(0, 2, 1).float()

        pred_dist = flatten(out.box_logits).view(b, -1, 4, self.reg_max)  # (B, A, 4, reg_max)
        pred_logits = flatten(out.class_logits)  # (B, A, nc)
        pred_coefs = flatten(out.coefficients)  # (B, A, nm)
        points, strides = anchor_grid(shapes, protos.device, protos.dtype)  # grid units, (A, 1)
        imgsz_h, imgsz_w = shapes[0][0] * STRIDES[0], shapes[0][1] * STRIDES[0]

        bins = torch.arange(self.reg_max, device=protos.device, dtype=protos.dtype)
        pred_boxes = distances_to_boxes(points, (pred_dist.softmax(-1) * bins).sum(-1))  # (B, A, 4) grid units

        device = protos.device
        gt_boxes, gt_valid, gt_rows = pad_targets(batch["batch_idx"].to(device).long(),
                                                  batch["boxes"].to(device).float(), b)
        gt_labels = torch.zeros(gt_valid.shape, dtype=torch.long, device=device)  # class-agnostic: "object"
        assigned = self.assigner(pred_logits.detach().sigmoid(), pred_boxes.detach() * strides,
                                 points * strides, gt_labels, gt_boxes, gt_valid)
        score_sum = assigned.target_scores.sum().clamp(min=1)
        fg = assigned.fg_mask

        loss_cls = F.binary_cross_entropy_with_logits(pred_logits, assigned.target_scores, reduction="sum") / score_sum
        if bool(fg.any()):
            weight = assigned.target_scores.sum(-1)[fg]  # (P,)
            target_grid = assigned.target_boxes / strides  # to grid units, as the predictions
            loss_box = ((1 - box_ciou(pred_boxes[fg], target_grid[fg])) * weight).sum() / score_sum
            target_dist = boxes_to_distances(points.expand(b, -1, -1)[fg], target_grid[fg], self.reg_max - 1)
            loss_dfl = (distribution_focal_loss(pred_dist[fg], target_dist) * weight).sum() / score_sum
            loss_mask = self._mask_loss(fg, assigned.gt_index, gt_rows, gt_boxes, batch["masks"], protos, pred_coefs,
                                        (imgsz_h, imgsz_w))
        else:  # keep every output in the graph so DDP sees gradients for all parameters
            loss_box = loss_dfl = pred_dist.sum() * 0
            loss_mask = protos.sum() * 0 + pred_coefs.sum() * 0
        items = torch.stack((loss_box * self.gains.box, loss_mask * self.gains.box, loss_cls * self.gains.cls,
                             loss_dfl * self.gains.dfl))
        return items.sum() * b, items.detach()

    @staticmethod
    def _mask_loss(fg: torch.Tensor, gt_index: torch.Tensor, gt_rows: torch.Tensor, gt_boxes: torch.Tensor,
                   masks: torch.Tensor, protos: torch.Tensor, coefs: torch.Tensor, imgsz: tuple[int, int]
                   ) -> torch.Tensor:
        """Mean over positives of BCE(coefs @ protos, own instance mask) summed inside the target box, divided
        by the mask size and the box's normalised area (YOLOv8's cropped mask loss). Pixels outside the box add
        nothing, so each instance's positives are evaluated on its box crop only, not on the whole prototype."""
        _, nm, mh, mw = protos.shape
        masks = masks.to(protos.device).float()
        if masks.shape[-2:] != (mh, mw):
            masks = F.interpolate(masks[None], (mh, mw), mode="nearest")[0]
        to_mask = torch.tensor([mw / imgsz[1], mh / imgsz[0]] * 2, device=protos.device)
        # A pixel c is inside [x1, x2) when ceil(x1) <= c < ceil(x2).
        bounds = (gt_boxes * to_mask).ceil().clamp(min=0)
        bounds = torch.minimum(bounds, torch.tensor([mw, mh, mw, mh], device=protos.device)).long().tolist()
        areas = ((gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1])
                 / (imgsz[0] * imgsz[1])).clamp(min=1e-9)
        total = protos.sum() * 0
        for i in range(fg.shape[0]):
            fg_i = fg[i]
            if not bool(fg_i.any()):
                continue
            owners = gt_index[i, fg_i]
            coefs_i = coefs[i, fg_i]
            protos_i = protos[i]  # sliced per instance below: each slice's gradient is the size of one image's
            for g in owners.unique().tolist():
                x1, y1, x2, y2 = bounds[i][g]
                if x2 <= x1 or y2 <= y1:
                    continue
                logits = coefs_i[owners == g] @ protos_i[:, y1:y2, x1:x2].reshape(nm, -1)  # (p, crop pixels)
                target = masks[gt_rows[i, g], y1:y2, x1:x2].reshape(1, -1).expand_as(logits)
                bce = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
                total = total + bce / (mh * mw * areas[i, g])
        return total / fg.sum()
