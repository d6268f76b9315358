"""Exponential moving average of a model's weights (YOLOv8's ModelEMA): the averaged copy is what is validated
and exported, because it is smoother than the raw weights late in training."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """``ema = d * ema + (1 - d) * model`` after each optimiser step, over every floating-point parameter and
    buffer (batch-norm statistics included), with ``d = decay * (1 - exp(-updates / tau))`` ramping up from 0 so
    the early, fast-changing weights are not averaged in for long."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = unwrap(model).state_dict()
        averaged = [(value, source[name]) for name, value in self.module.state_dict().items()
                    if value.dtype.is_floating_point]
        # One multi-tensor kernel per operation instead of two per tensor (~300 tensors), same arithmetic.
        ema_values, model_values = [a for a, _ in averaged], [m for _, m in averaged]
        torch._foreach_mul_(ema_values, d)
        torch._foreach_add_(ema_values, model_values, alpha=1 - d)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / DataParallel wrapper."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model
