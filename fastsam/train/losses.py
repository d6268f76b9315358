"""The YOLOv8-seg training loss, class-agnostic as FastSAM trains it.

Four terms, each normalised like YOLOv8's: CIoU box loss and distribution focal loss (DFL) weighted by the
assigned target scores, BCE class loss over every anchor divided by the target-score sum, and a per-instance
mask loss (coefficients @ prototypes vs the instance's own binary mask, ``overlap_mask`` off), cropped to the
ground-truth box and divided by the box's normalised area (optionally a box grown by ``mask_margin``; YOLOv8's is
0). Gains: box 7.5, mask 7.5 (as box), cls 0.5, dfl 1.5.
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


def check_mask_margin(margin: float) -> float:
    """``margin`` as a float, or InvalidInputError unless it is a number in [0, 2]."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= float(margin) <= 2.0:
        raise InvalidInputError(f"mask_margin must be a number in [0, 2] (a fraction of the box's size), got {margin!r}")
    return float(margin)


def expand_boxes(boxes: torch.Tensor, margin: float, imgsz: tuple[int, int]) -> torch.Tensor:
    """(..., 4) xyxy boxes grown by ``margin`` x their width / height on each side, clipped to the (h, w) input.

    The mask loss is evaluated inside these boxes: with a margin it also pushes the logits just outside the object
    below zero, so a mask cannot spill past its box and be cut into a straight edge by the box crop at inference
    (YOLOv8's loss, margin 0, leaves everything outside the box unsupervised)."""
    if margin == 0:
        return boxes
    pad = (boxes[..., 2:] - boxes[..., :2]) * margin
    limit = torch.tensor([imgsz[1], imgsz[0]], dtype=boxes.dtype, device=boxes.device)
    grown_min = (boxes[..., :2] - pad).clamp(min=0)
    grown_max = torch.minimum(boxes[..., 2:] + pad, limit)
    return torch.cat((grown_min, grown_max), -1)


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

    def __init__(self, num_classes: int = 1, reg_max: int = 16, gains: LossGains = LossGains(), topk: int = 10,
                 mask_margin: float = 0.0) -> None:
        if num_classes < 1 or reg_max < 2:
            raise InvalidInputError(f"need num_classes >= 1 and reg_max >= 2, got {num_classes}, {reg_max}")
        self.num_classes, self.reg_max, self.gains = num_classes, reg_max, gains
        self.mask_margin = check_mask_margin(mask_margin)
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
            loss_mask = self._mask_loss(fg, assigned.gt_index, gt_rows,
                                        expand_boxes(gt_boxes, self.mask_margin, (imgsz_h, imgsz_w)), batch["masks"],
                                        protos, pred_coefs, (imgsz_h, imgsz_w))
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
        by the mask size and the box's normalised area (YOLOv8's cropped mask loss).

        Pixels outside the box add nothing, so each instance is evaluated on a window around its box only
        (a box covers ~5% of the prototype on average). Without a Python step per instance: instances are
        bucketed by window size (the box's height and width rounded up to a power of two), every window's
        prototype pixels are gathered in one indexing op, and each bucket is a few batched products of its
        windows with its instances' positive coefficients (padded to the most positives an instance has)."""
        _, nm, mh, mw = protos.shape
        device = protos.device
        masks = masks.to(device).float()
        if masks.shape[-2:] != (mh, mw):
            masks = F.interpolate(masks[None], (mh, mw), mode="nearest")[0]
        to_mask = torch.tensor([mw / imgsz[1], mh / imgsz[0]] * 2, device=device)
        # A pixel c is inside [x1, x2) when ceil(x1) <= c < ceil(x2).
        bounds = (gt_boxes * to_mask).ceil().clamp(min=0)
        bounds = torch.minimum(bounds, torch.tensor([mw, mh, mw, mh], device=device)).long()  # (B, M, 4)
        areas = ((gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1])
                 / (imgsz[0] * imgsz[1])).clamp(min=1e-9)

        # Positives grouped by their instance: (U, K) slots, K the most positives of one instance.
        image, anchor = fg.nonzero(as_tuple=True)
        m = gt_boxes.shape[1]
        keys, slot = (image * m + gt_index[image, anchor]).unique(return_inverse=True)
        counts = torch.bincount(slot, minlength=len(keys))
        first = torch.cumsum(counts, 0) - counts
        order = torch.argsort(slot, stable=True)
        rank = torch.empty_like(slot)
        rank[order] = torch.arange(len(slot), device=device) - first[slot[order]]
        k = int(counts.max())
        grouped_coefs = coefs.new_zeros(len(keys), k, nm).index_put((slot, rank), coefs[image, anchor])
        has_positive = torch.zeros(len(keys), k, dtype=torch.bool, device=device).index_put(
            (slot, rank), torch.ones_like(slot, dtype=torch.bool))
        inst_image, inst_gt = keys // m, keys % m
        x1, y1, x2, y2 = bounds[inst_image, inst_gt].unbind(-1)
        heights, widths = y2 - y1, x2 - x1
        # Windows at least 8 cells a side: fewer buckets (fewer, larger products) for a little more arithmetic.
        window_h = (2 ** torch.log2(heights.clamp(min=8).float()).ceil()).long().clamp(max=mh)
        window_w = (2 ** torch.log2(widths.clamp(min=8).float()).ceil()).long().clamp(max=mw)
        nonempty = (heights > 0) & (widths > 0)

        # Every bucket's window pixels, as rows of the (B * mh * mw, nm) prototype table, gathered at once.
        buckets, pixel_index, target_index, inside = [], [], [], []
        sizes = torch.stack((window_h, window_w), 1)[nonempty].unique(dim=0).tolist()
        for hb, wb in sizes:
            members = (nonempty & (window_h == hb) & (window_w == wb)).nonzero().squeeze(1)
            top = torch.minimum(y1[members], torch.tensor(mh - hb, device=device))
            left = torch.minimum(x1[members], torch.tensor(mw - wb, device=device))
            ys = top[:, None] + torch.arange(hb, device=device)  # (n, hb)
            xs = left[:, None] + torch.arange(wb, device=device)  # (n, wb)
            cells = ys[:, :, None] * mw + xs[:, None, :]  # (n, hb, wb)
            pixel_index.append((inst_image[members, None, None] * (mh * mw) + cells).reshape(-1))
            rows = gt_rows[inst_image[members], inst_gt[members]]
            target_index.append((rows[:, None, None] * (mh * mw) + cells).reshape(-1))
            in_rows = (ys >= y1[members, None]) & (ys < y2[members, None])
            in_columns = (xs >= x1[members, None]) & (xs < x2[members, None])
            inside.append((in_rows[:, :, None] & in_columns[:, None, :]).reshape(-1))
            buckets.append((members, hb * wb))
        if not buckets:
            return protos.sum() * 0 + coefs.sum() * 0
        table = protos.permute(0, 2, 3, 1).reshape(-1, nm)
        lengths = [len(members) * cells for members, cells in buckets]
        pixels = table[torch.cat(pixel_index)].split(lengths)
        targets = masks.reshape(-1)[torch.cat(target_index)].split(lengths)
        insides = torch.cat(inside).split(lengths)
        total = protos.sum() * 0
        for (members, cells), window, target, box in zip(buckets, pixels, targets, insides):
            n = len(members)
            window = window.view(n, cells, nm)
            coefs_t = grouped_coefs[members].transpose(1, 2)  # (n, nm, K)
            box = box.view(n, 1, cells).to(window.dtype)
            # BCE(l, t) = softplus(l) - t l, and with l = c . p the target part summed over the box is c . G,
            # G = sum over the box of t p: no (n, cells, K) target or second elementwise pass is needed.
            soft_sums = box @ F.softplus(window @ coefs_t)  # (n, 1, K)
            target_sums = ((box * target.view(n, 1, cells)) @ window) @ coefs_t  # (n, 1, K)
            per_positive = (soft_sums - target_sums).squeeze(1) * has_positive[members]
            normaliser = mh * mw * areas[inst_image[members], inst_gt[members]]
            total = total + (per_positive.sum(1) / normaliser).sum()
        return total / fg.sum()
