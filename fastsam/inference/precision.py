"""Reduced-precision inference: the network in bfloat16, channels-last, with its outputs kept in float32.

Mask logits are thresholded at zero and boxes are decoded from distribution bins, so the layers that produce
them (the last convolution of each head branch and of the prototype branch) stay in float32: bf16's 8-bit
mantissa there would flip many pixels near the mask edges. Everything before them runs in bf16, which CPUs
with AVX512-BF16 / AMX run several times faster than fp32.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fastsam.errors import InvalidInputError
from fastsam.model.yolov8_seg import YoloV8Seg

PRECISIONS = ("fp32", "bf16")


class _Float32Layer(nn.Module):
    """A layer run in float32 on whatever precision comes in."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.float())


class ReducedPrecisionModel(nn.Module):
    """Wraps an eval-mode :class:`YoloV8Seg` copy for bf16 inference; called like it, returns float32 outputs."""

    def __init__(self, model: YoloV8Seg, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        net = copy.deepcopy(model).eval()
        head = net.head
        for branches in (head.box_convs, head.cls_convs, head.coef_convs):
            for branch in branches:
                branch[-1] = _Float32Layer(branch[-1])
        head.proto.cv3 = _Float32Layer(head.proto.cv3)
        net.to(dtype=dtype, memory_format=torch.channels_last)
        for module in net.modules():
            if isinstance(module, _Float32Layer):
                module.layer.float()
        self.net, self.dtype, self.cfg = net, dtype, net.cfg

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(images.to(self.dtype).contiguous(memory_format=torch.channels_last))


def check_precision(precision: object) -> str:
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return str(precision)
