"""Building blocks of YOLOv8: conv-BN-SiLU, the C2f stage, SPPF pooling and the mask-prototype branch.

Sub-module names (``conv``/``bn``, ``cv1``/``cv2``/``m``) follow the YOLOv8 checkpoint layout so released
weights load by name inside each block.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from fastsam.errors import InvalidInputError


class ConvBNAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> SiLU, 'same' padding for odd kernels. Shapes: (B, c_in, H, W) ->
    (B, c_out, H / stride, W / stride)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=bn_eps, momentum=0.03)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the batch norm into the convolution (inference only); idempotent."""
        if isinstance(self.bn, nn.Identity):
            return
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(
            self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size, self.conv.stride,
            self.conv.padding, groups=self.conv.groups, bias=True,
        ).to(self.conv.weight.device)
        fused.weight.copy_(self.conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv = fused
        self.bn = nn.Identity()


def set_batch_norm_eps(model: nn.Module, default: float, per_layer: Iterable[tuple[str, float]] = ()) -> None:
    """Give every batch norm in ``model`` the epsilon ``default``, then the layers named in ``per_layer``
    (module path, eps) their own. Raises InvalidInputError for a path that is not a batch norm of ``model``."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = default
    for name, eps in per_layer:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            module = None
        if not isinstance(module, nn.BatchNorm2d):
            raise InvalidInputError(f"batch-norm eps given for {name!r}, which is not a batch norm of the network")
        module.eps = eps


class Bottleneck(nn.Module):
    """Two 3x3 convs with an optional residual connection (used when input and output widths match)."""

    def __init__(self, channels: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(channels, channels, 3)
        self.cv2 = ConvBNAct(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.shortcut else y


class C2f(nn.Module):
    """CSP stage with ``depth`` bottlenecks: split the 1x1 projection in two halves, run the bottlenecks on the
    second half one after another, and fuse every intermediate output with a final 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, depth: int, shortcut: bool) -> None:
        super().__init__()
        self.hidden = c_out // 2
        self.cv1 = ConvBNAct(c_in, 2 * self.hidden, 1)
        self.cv2 = ConvBNAct((2 + depth) * self.hidden, c_out, 1)
        self.m = nn.ModuleList(Bottleneck(self.hidden, shortcut) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).split(self.hidden, dim=1))
        for bottleneck in self.m:
            parts.append(bottleneck(parts[-1]))
        return self.cv2(torch.cat(parts, dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained 5x5 max-pools, concatenated with their input."""

    def __init__(self, c_in: int, c_out: int, pool: int = 5) -> None:
        super().__init__()
        hidden = c_in // 2
        self.cv1 = ConvBNAct(c_in, hidden, 1)
        self.cv2 = ConvBNAct(hidden * 4, c_out, 1)
        self.m = nn.MaxPool2d(pool, stride=1, padding=pool // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        p1 = self.m(x)
        p2 = self.m(p1)
        return self.cv2(torch.cat((x, p1, p2, self.m(p2)), dim=1))


class Proto(nn.Module):
    """Mask prototypes: (B, c_in, H/8, W/8) -> (B, num_masks, H/4, W/4)."""

    def __init__(self, c_in: int, hidden: int, num_masks: int) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(c_in, hidden, 3)
        self.upsample = nn.ConvTranspose2d(hidden, hidden, 2, 2, 0, bias=True)
        self.cv2 = ConvBNAct(hidden, hidden, 3)
        self.cv3 = ConvBNAct(hidden, num_masks, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))
