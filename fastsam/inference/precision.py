"""Inference layout and precision: the network channels-last (faster convolutions on CPUs), in float32 or in
bfloat16 with its outputs kept in float32.

Mask logits are thresholded at zero and boxes are decoded from distribution bins, so the layers that produce
them (the last convolution of each head branch and of the prototype branch) stay in float32: bf16's 8-bit
mantissa there would flip many pixels near the mask edges. Everything before them runs in bf16, which CPUs
with AVX512-BF16 / AMX run several times faster than fp32.

On CPUs the bf16 network calls oneDNN directly: each convolution's weight is reordered into the blocked
layout oneDNN chooses for the input shape, once per shape (PyTorch's eager bf16 convolution reorders it on
every call), its SiLU runs inside the convolution's kernel, and C2f's first 1x1 convolution is computed as its
two halves so that the bottlenecks read dense tensors. In eager bf16 the separate SiLU passes and those copies
cost about as much as the convolutions themselves (profiled on FastSAM-s at 704x1024: convolutions 52% of the
time, SiLU 21%, concatenations 15%, copies 6%).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fastsam.errors import InvalidInputError
from fastsam.model.blocks import C2f, ConvBNAct
from fastsam.model.yolov8_seg import YoloV8Seg

PRECISIONS = ("fp32", "bf16")
#: Input shapes for which each convolution keeps its packed weight (letterboxed inputs come in a few shapes).
PACKED_SHAPES = 8


class _Float32Layer(nn.Module):
    """A layer run in float32 on whatever precision comes in."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.float())


class _OneDnnConv(nn.Module):
    """A convolution with bias, optionally followed by SiLU, run by oneDNN with its weight reordered into
    oneDNN's blocked layout once per input shape. Shapes as ``conv``'s; inputs channels-last in the weight's
    dtype. ``out_channels`` keeps only that slice of ``conv``'s output channels."""

    def __init__(self, conv: nn.Conv2d, silu: bool, out_channels: slice = slice(None)) -> None:
        super().__init__()
        weight = conv.weight.detach()[out_channels].contiguous()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", conv.bias.detach()[out_channels].to(weight.dtype).contiguous())
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.attr = "swish" if silu else "none"
        # Packed weights per input shape, built on first use: oneDNN picks the blocked layout for the shape it
        # will see, and a weight packed for another shape is reordered again on every call (a 768 -> 512 1x1
        # convolution at 22x32 pixels: 35 ms instead of 1.6 ms).
        self._packed: dict[tuple[int, ...], torch.Tensor] = {}

    def __getstate__(self) -> dict:
        # Opaque oneDNN tensors neither pickle nor deep-copy; a copy packs its weights again when called.
        return {**self.__dict__, "_packed": {}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        packed = self._packed.get(shape)
        if packed is None:
            packed = torch.ops.mkldnn._reorder_convolution_weight(self.weight, *self.args, list(shape))
            # A new dict rather than an update in place: threads sharing the model never see one change size.
            recent = list(self._packed.items())[-(PACKED_SHAPES - 1):]
            self._packed = {**dict(recent), shape: packed}
        return torch.ops.mkldnn._convolution_pointwise(x, packed, self.bias, *self.args, self.attr, [], "")


def _onednn_conv_act(block: ConvBNAct) -> _OneDnnConv:
    return _OneDnnConv(block.conv, silu=isinstance(block.act, nn.SiLU))


class _OneDnnC2f(nn.Module):
    """A fused :class:`C2f` on :class:`_OneDnnConv`: its first 1x1 convolution as two, one per half, so that the
    bottlenecks get dense inputs instead of channel slices (which every convolution would copy first)."""

    def __init__(self, block: C2f) -> None:
        super().__init__()
        h = block.hidden
        self.cv1 = nn.ModuleList(_OneDnnConv(block.cv1.conv, True, half) for half in (slice(0, h), slice(h, 2 * h)))
        self.cv2 = _onednn_conv_act(block.cv2)
        self.m = block.m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [half(x) for half in self.cv1]
        for bottleneck in self.m:
            parts.append(bottleneck(parts[-1]))
        return self.cv2(torch.cat(parts, dim=1))


def _use_onednn(net: nn.Module) -> None:
    """Replace, in place, every fused ConvBNAct and C2f of ``net`` (on the CPU) and the convolutions wrapped in
    :class:`_Float32Layer` by their oneDNN forms, each in its weights' dtype."""
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, C2f) and isinstance(child.cv1.bn, nn.Identity):
                setattr(parent, name, _OneDnnC2f(child))
            elif isinstance(child, ConvBNAct) and isinstance(child.bn, nn.Identity):
                setattr(parent, name, _onednn_conv_act(child))
            elif isinstance(parent, _Float32Layer) and isinstance(child, nn.Conv2d) and child.bias is not None:
                setattr(parent, name, _OneDnnConv(child, silu=False))


class InferenceModel(nn.Module):
    """An eval-mode :class:`YoloV8Seg` laid out channels-last, in float32 or bfloat16; called like the model, it
    returns float32 outputs. With bf16 the output layers stay in float32 (see the module docstring). An fp32
    model is converted in place (it still accepts any layout); a bf16 one is a copy, so the caller's model keeps
    its precision. ``onednn=False`` keeps bf16 on PyTorch's eager operators (for comparison)."""

    def __init__(self, model: YoloV8Seg, precision: str = "fp32", onednn: bool = True) -> None:
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
        if onednn and dtype != torch.float32 and _onednn_available(net):
            _use_onednn(net)
        self.net, self.dtype, self.cfg = net, dtype, net.cfg

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(images.to(self.dtype).contiguous(memory_format=torch.channels_last))


def _onednn_available(net: nn.Module) -> bool:
    """Whether oneDNN can run ``net``: this torch has it and every parameter is on the CPU."""
    return torch.backends.mkldnn.is_available() and all(p.device.type == "cpu" for p in net.parameters())


def check_precision(precision: object) -> str:
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return str(precision)
