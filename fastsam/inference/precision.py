"""Inference layout and precision: the network channels-last (faster convolutions on CPUs), in float32 or in
bfloat16 with its outputs kept in float32.

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


class InferenceModel(nn.Module):
    """An eval-mode :class:`YoloV8Seg` laid out channels-last, in float32 or bfloat16; called like the model, it
    returns float32 outputs. With bf16 the output layers stay in float32 (see the module docstring). An fp32
    model is converted in place (it still accepts any layout); a bf16 one is a copy, so the caller's model keeps
    its precision."""

    def __init__(self, model: YoloV8Seg, precision: str = "fp32") -> None:
        super().__init__()
        dtype = torch.bfloat16 if check_precision(precision) == "bf16" else torch.float32
        net = model.eval() if dtype == torch.float32 else copy.deepcopy(model).eval()
        if dtype != torch.float32:
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
