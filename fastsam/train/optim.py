"""Optimiser and learning-rate schedule of the YOLOv8 recipe.

Three parameter groups: biases (no decay; the group that warms up from ``warmup_bias_lr``), conv weights (with
weight decay) and normalisation weights (no decay). The per-epoch LR factor falls linearly or along a cosine from
1 to ``lrf``; during warm-up (the first ``max(warmup_epochs * batches per epoch, 100)`` iterations) the LR rises
linearly to the scheduled value, the momentum from ``warmup_momentum`` to ``momentum``, and the number of
accumulated batches from 1 to ``nominal_batch / batch``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fastsam.errors import InvalidInputError

OPTIMIZERS = ("auto", "SGD", "AdamW")


@dataclass(frozen=True)
class OptimSettings:
    """Resolved optimiser choice: ``name`` SGD or AdamW, base ``lr``, ``momentum`` (AdamW's beta1) and
    ``warmup_bias_lr``."""

    name: str
    lr: float
    momentum: float
    warmup_bias_lr: float


def resolve_optimizer(name: str, lr0: float, momentum: float, warmup_bias_lr: float, num_classes: int,
                      iterations: int) -> OptimSettings:
    """YOLOv8's ``auto`` rule: AdamW at lr 0.002 * 5 / (4 + nc) (momentum 0.9, no bias warm-up boost) for short runs
    (< 10000 iterations), SGD at lr 0.01 otherwise; explicit names use the given lr and momentum."""
    if name not in OPTIMIZERS:
        raise InvalidInputError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    if name == "auto":
        if iterations > 10000:
            return OptimSettings("SGD", 0.01, 0.9, warmup_bias_lr)
        return OptimSettings("AdamW", round(0.002 * 5 / (4 + num_classes), 6), 0.9, 0.0)
    if lr0 <= 0 or not 0 <= momentum < 1:
        raise InvalidInputError(f"need lr0 > 0 and momentum in [0, 1), got {lr0}, {momentum}")
    return OptimSettings(name, lr0, momentum, warmup_bias_lr)


def build_optimizer(model: nn.Module, settings: OptimSettings, weight_decay: float) -> torch.optim.Optimizer:
    """Optimiser over ``model`` with groups [biases, decayed weights, norm weights] (that order)."""
    biases, weights, norms = [], [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if name == "bias":
                biases.append(param)
            elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
                norms.append(param)
            else:
                weights.append(param)
    groups = [{"params": biases, "weight_decay": 0.0}, {"params": weights, "weight_decay": weight_decay},
              {"params": norms, "weight_decay": 0.0}]
    # foreach: multi-tensor kernels, also on CPUs (torch picks them by default on GPUs only).
    if settings.name == "SGD":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, nesterov=True, foreach=True)
    return torch.optim.AdamW(groups, lr=settings.lr, betas=(settings.momentum, 0.999), foreach=True)


def lr_factor(epoch: float, epochs: int, lrf: float, cosine: bool) -> float:
    """Multiplier of the base LR at ``epoch`` (0-based): 1 at the start, ``lrf`` at ``epochs``."""
    x = min(max(epoch / max(epochs, 1), 0.0), 1.0)
    if cosine:
        return ((1 - math.cos(x * math.pi)) / 2) * (lrf - 1) + 1
    return (1 - x) * (1.0 - lrf) + lrf


@dataclass
class WarmupSchedule:
    """Per-iteration settings: call :meth:`apply` before each batch. ``warmup_iters`` from :func:`warmup_iterations`."""

    base_lr: float
    epochs: int
    lrf: float
    cosine: bool
    warmup_iters: int
    warmup_bias_lr: float
    warmup_momentum: float
    momentum: float
    accumulate: int
    first_iteration: int = 0  # warm-up counts from here: a run continued from weights alone warms up again

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int, epoch: int) -> int:
        """Set every group's LR (and momentum) for global ``iteration`` in ``epoch``; returns how many batches
        to accumulate before the next optimiser step."""
        target = self.base_lr * lr_factor(epoch, self.epochs, self.lrf, self.cosine)
        if iteration - self.first_iteration >= self.warmup_iters:
            for group in optimizer.param_groups:
                group["lr"] = target
            return self.accumulate
        ramp = [self.first_iteration, self.first_iteration + self.warmup_iters]
        for index, group in enumerate(optimizer.param_groups):
            start = self.warmup_bias_lr if index == 0 else 0.0
            group["lr"] = float(np.interp(iteration, ramp, [start, target]))
            momentum = float(np.interp(iteration, ramp, [self.warmup_momentum, self.momentum]))
            if "momentum" in group:
                group["momentum"] = momentum
        return max(1, int(round(float(np.interp(iteration, ramp, [1, self.accumulate])))))


def warmup_iterations(warmup_epochs: float, batches_per_epoch: int) -> int:
    """YOLOv8 warms up for ``warmup_epochs`` epochs but at least 100 iterations (none if warmup_epochs is 0)."""
    return max(round(warmup_epochs * batches_per_epoch), 100) if warmup_epochs > 0 else 0
