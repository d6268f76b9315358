"""YOLOv8 segmentation head: per-level box (DFL), class and mask-coefficient branches plus prototypes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastsam.model.blocks import ConvBNAct, Proto
from fastsam.model.config import YoloV8SegConfig

STRIDES = (8, 16, 32)


def _branch(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(ConvBNAct(c_in, hidden, 3), ConvBNAct(hidden, hidden, 3), nn.Conv2d(hidden, c_out, 1))


@dataclass
class HeadOutput:
    """Raw head outputs. Per level i (stride STRIDES[i]): box_logits[i] (B, 4*reg_max, h, w),
    class_logits[i] (B, nc, h, w), coefficients[i] (B, nm, h, w); protos (B, nm, H/4, W/4)."""

    box_logits: list[torch.Tensor]
    class_logits: list[torch.Tensor]
    coefficients: list[torch.Tensor]
    protos: torch.Tensor


class SegmentHead(nn.Module):
    def __init__(self, cfg: YoloV8SegConfig) -> None:
        super().__init__()
        level_widths = cfg.widths[2:]
        c_first = level_widths[0]
        box_hidden = max(16, c_first // 4, cfg.reg_max * 4)
        cls_hidden = max(c_first, min(cfg.num_classes, 100))
        coef_hidden = max(c_first // 4, cfg.num_masks)
        self.reg_max = cfg.reg_max
        self.num_classes = cfg.num_classes
        self.num_masks = cfg.num_masks
        self.box_convs = nn.ModuleList(_branch(c, box_hidden, 4 * cfg.reg_max) for c in level_widths)
        self.cls_convs = nn.ModuleList(_branch(c, cls_hidden, cfg.num_classes) for c in level_widths)
        self.coef_convs = nn.ModuleList(_branch(c, coef_hidden, cfg.num_masks) for c in level_widths)
        self.proto = Proto(c_first, cfg.proto_channels, cfg.num_masks)

    def forward(self, features: tuple[torch.Tensor, ...]) -> HeadOutput:
        return HeadOutput(
            box_logits=[conv(f) for conv, f in zip(self.box_convs, features)],
            class_logits=[conv(f) for conv, f in zip(self.cls_convs, features)],
            coefficients=[conv(f) for conv, f in zip(self.coef_convs, features)],
            protos=self.proto(features[0]),
        )


def anchor_grid(shapes: list[tuple[int, int]], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres (A, 2) in grid units (cell centre = index + 0.5) and their strides (A, 1) for the level
    shapes (h, w), levels concatenated in order, row-major within a level."""
    points, strides = [], []
    for (h, w), stride in zip(shapes, STRIDES):
        ys = torch.arange(h, device=device, dtype=dtype) + 0.5
        xs = torch.arange(w, device=device, dtype=dtype) + 0.5
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((gx, gy), -1).view(-1, 2))
        strides.append(torch.full((h * w, 1), float(stride), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(strides)


def dfl_expectation(box_logits: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Distribution focal loss decoding: (..., 4*reg_max) logits -> (..., 4) expected distances in bins."""
    probs = box_logits.unflatten(-1, (4, reg_max)).softmax(-1)
    bins = torch.arange(reg_max, device=box_logits.device, dtype=probs.dtype)
    return (probs * bins).sum(-1)


def _anchor_major(levels: list[torch.Tensor]) -> torch.Tensor:
    """Per-level maps (B, C, h, w) -> (B, A, C), anchors level by level, row-major within a level. For
    channels-last maps (the inference layout) each level is a view and the concatenation the only copy."""
    return torch.cat([t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, t.shape[1]) for t in levels], 1)


def decode_predictions(out: HeadOutput, reg_max: int) -> torch.Tensor:
    """Head outputs -> (B, 4 + nc + nm, A): boxes as (cx, cy, w, h) in input pixels, class probabilities and
    mask coefficients, anchors ordered level by level. Decoded anchor-major (each anchor's values contiguous,
    as channels-last maps hold them); the result is a transposed view of that (B, A, 4 + nc + nm) tensor."""
    shapes = [tuple(t.shape[2:]) for t in out.box_logits]
    box = _anchor_major(out.box_logits)
    points, strides = anchor_grid(shapes, box.device, box.dtype)  # (A, 2), (A, 1)
    dist = dfl_expectation(box, reg_max)  # (B, A, 4): left, top, right, bottom
    top_left = points - dist[..., :2]
    bottom_right = points + dist[..., 2:]
    xywh = torch.cat(((top_left + bottom_right) / 2, bottom_right - top_left), -1) * strides
    classes = _anchor_major(out.class_logits).sigmoid()
    return torch.cat((xywh, classes, _anchor_major(out.coefficients)), -1).transpose(1, 2)
