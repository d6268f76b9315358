"""YOLOv8 backbone (CSPDarknet with C2f stages and SPPF)."""

from __future__ import annotations

import torch
from torch import nn

from fastsam.model.blocks import SPPF, C2f, ConvBNAct
from fastsam.model.config import YoloV8SegConfig


class Backbone(nn.Module):
    """(B, 3, H, W) -> features P3, P4, P5 at strides 8, 16, 32 (H and W multiples of 32)."""

    def __init__(self, cfg: YoloV8SegConfig) -> None:
        super().__init__()
        w1, w2, w3, w4, w5 = cfg.widths
        d2, d3, d4, d5 = cfg.depths
        self.stem = ConvBNAct(3, w1, 3, 2)
        self.down2 = ConvBNAct(w1, w2, 3, 2)
        self.stage2 = C2f(w2, w2, d2, shortcut=True)
        self.down3 = ConvBNAct(w2, w3, 3, 2)
        self.stage3 = C2f(w3, w3, d3, shortcut=True)
        self.down4 = ConvBNAct(w3, w4, 3, 2)
        self.stage4 = C2f(w4, w4, d4, shortcut=True)
        self.down5 = ConvBNAct(w4, w5, 3, 2)
        self.stage5 = C2f(w5, w5, d5, shortcut=True)
        self.sppf = SPPF(w5, w5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stage2(self.down2(self.stem(x)))
        p3 = self.stage3(self.down3(x))
        p4 = self.stage4(self.down4(p3))
        p5 = self.sppf(self.stage5(self.down5(p4)))
        return p3, p4, p5
