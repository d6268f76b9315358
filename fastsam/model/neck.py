"""YOLOv8 PAN neck: a top-down path then a bottom-up path over P3..P5."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastsam.model.blocks import C2f, ConvBNAct
from fastsam.model.config import YoloV8SegConfig


class PANNeck(nn.Module):
    """Features (P3, P4, P5) -> fused features with widths (widths[2], widths[3], widths[4])."""

    def __init__(self, cfg: YoloV8SegConfig) -> None:
        super().__init__()
        _, _, w3, w4, w5 = cfg.widths
        depth = cfg.neck_depth
        self.top_down_p4 = C2f(w5 + w4, w4, depth, shortcut=False)
        self.top_down_p3 = C2f(w4 + w3, w3, depth, shortcut=False)
        self.down_p3 = ConvBNAct(w3, w3, 3, 2)
        self.bottom_up_p4 = C2f(w3 + w4, w4, depth, shortcut=False)
        self.down_p4 = ConvBNAct(w4, w4, 3, 2)
        self.bottom_up_p5 = C2f(w4 + w5, w5, depth, shortcut=False)

    def forward(
        self, features: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3, p4, p5 = features
        t4 = self.top_down_p4(torch.cat((F.interpolate(p5, scale_factor=2.0, mode="nearest"), p4), 1))
        n3 = self.top_down_p3(torch.cat((F.interpolate(t4, scale_factor=2.0, mode="nearest"), p3), 1))
        n4 = self.bottom_up_p4(torch.cat((self.down_p3(n3), t4), 1))
        n5 = self.bottom_up_p5(torch.cat((self.down_p4(n4), p5), 1))
        return n3, n4, n5
