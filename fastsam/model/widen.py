"""Widening a trained network's box regression range (``reg_max``) without changing what it predicts.

A YOLOv8 box side is a distribution over ``reg_max`` bins of one stride each, so the longest box a level can
describe from its anchor is about ``2 (reg_max - 1)`` strides: 960 px at stride 32 with reg_max 16. That is less
than a 1024-px input, which is why FastSAM-x uses 26. :func:`widen_reg_max` turns a model into one with more bins
whose outputs are the same: the old bins keep their weights, the new bins start with a bias far below the
others (no probability mass), and the wider hidden layers of the box branch (YOLOv8 sizes them ``4 reg_max``)
get new channels that feed nothing old. Fine-tuning then teaches the new bins where longer boxes need them.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from fastsam.errors import InvalidInputError
from fastsam.model.blocks import ConvBNAct
from fastsam.model.yolov8_seg import YoloV8Seg

#: Bias of the new bins relative to the lowest old bias: exp(-30) ~ 1e-13 of the probability mass.
NEW_BIN_BIAS_MARGIN = 30.0


def _copy_conv_bn(old: ConvBNAct, new: ConvBNAct, inputs: int) -> None:
    """The old block's filters and batch-norm state into the first channels of the wider ``new`` block; the
    weights from new input channels (index >= ``inputs``) into old output channels are zero."""
    outputs = old.conv.out_channels
    new.conv.weight[:outputs].zero_()
    new.conv.weight[:outputs, :inputs] = old.conv.weight
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new.bn, name)[:outputs] = getattr(old.bn, name)
    new.bn.num_batches_tracked.copy_(old.bn.num_batches_tracked)
    new.bn.eps, new.bn.momentum = old.bn.eps, old.bn.momentum


@torch.no_grad()
def widen_reg_max(model: YoloV8Seg, reg_max: int) -> YoloV8Seg:
    """A new model with ``reg_max`` bins per box side (more than ``model``'s) and the same predictions.

    Everything but the box branches is copied unchanged. Raises InvalidInputError for a smaller or equal
    ``reg_max`` or a fused model (its batch norms are folded away)."""
    if not isinstance(model, YoloV8Seg):
        raise InvalidInputError(f"expected a YoloV8Seg model, got {type(model).__name__}")
    old_bins = model.cfg.reg_max
    if isinstance(reg_max, bool) or not isinstance(reg_max, int) or reg_max <= old_bins:
        raise InvalidInputError(f"reg_max must be an integer above the model's {old_bins}, got {reg_max!r}")
    if any(isinstance(block.bn, nn.Identity) for branch in model.head.box_convs for block in branch[:2]):
        raise InvalidInputError("cannot widen a fused model: load the checkpoint again without fusing")
    wider = YoloV8Seg(dataclasses.replace(model.cfg, reg_max=reg_max)).to(next(model.parameters()).device)
    untouched = {k: v for k, v in model.state_dict().items() if not k.startswith("head.box_convs.")}
    missing, unexpected = wider.load_state_dict(untouched, strict=False)
    assert not unexpected and all(k.startswith("head.box_convs.") for k in missing)
    for old, new in zip(model.head.box_convs, wider.head.box_convs):
        _copy_conv_bn(old[0], new[0], old[0].conv.in_channels)
        _copy_conv_bn(old[1], new[1], old[1].conv.in_channels)
        old_out, new_out = old[2], new[2]
        hidden = old_out.in_channels
        new_out.weight.zero_()
        floor = float(old_out.bias.min()) - NEW_BIN_BIAS_MARGIN
        new_out.bias.fill_(floor)
        for side in range(4):  # channels are side-major: side * reg_max + bin
            old_rows = slice(side * old_bins, (side + 1) * old_bins)
            new_rows = slice(side * reg_max, side * reg_max + old_bins)
            new_out.weight[new_rows, :hidden] = old_out.weight[old_rows]
            new_out.bias[new_rows] = old_out.bias[old_rows]
    return wider.train(model.training)
