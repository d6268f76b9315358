"""Architecture description of a YOLOv8-seg network, from a named scale or inferred from weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

import torch

from fastsam.errors import CheckpointError, InvalidInputError

# (depth multiple, width multiple, max channels) of the YOLOv8 scales.
SCALES: dict[str, tuple[float, float, int]] = {
    "n": (0.33, 0.25, 1024),
    "s": (0.33, 0.50, 1024),
    "m": (0.67, 0.75, 768),
    "l": (1.00, 1.00, 512),
    "x": (1.00, 1.25, 512),
}
_BASE_WIDTHS = (64, 128, 256, 512, 1024)
_BASE_DEPTHS = (3, 6, 6, 3)
_BASE_NECK_DEPTH = 3
_BASE_PROTO = 256


@dataclass(frozen=True)
class YoloV8SegConfig:
    """Channel widths and depths of a YOLOv8-seg network.

    widths: output channels of the five backbone levels P1..P5 (strides 2..32).
    depths: bottlenecks in the four backbone C2f stages; neck_depth: bottlenecks in each neck C2f.
    reg_max: bins of the distribution-focal box regression (16 for FastSAM-s, 26 for FastSAM-x).
    bn_eps: the batch norms' epsilon; layer_bn_eps: (module path, epsilon) pairs for the batch norms whose
    epsilon differs from it (checkpoints may mix values, e.g. 1e-5 in the box branch and 1e-3 elsewhere).
    """

    widths: tuple[int, int, int, int, int]
    depths: tuple[int, int, int, int]
    neck_depth: int
    num_classes: int = 1
    reg_max: int = 16
    num_masks: int = 32
    proto_channels: int = 256
    bn_eps: float = 1e-3
    layer_bn_eps: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for name, eps in ((None, self.bn_eps), *self.layer_bn_eps):
            if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
                raise InvalidInputError(f"batch-norm eps{f' of {name}' if name else ''} must be a finite number "
                                        f"> 0, got {eps!r}")
        if len(self.widths) != 5 or any(int(w) <= 0 for w in self.widths):
            raise InvalidInputError(f"widths must be 5 positive integers, got {self.widths}")
        if len(self.depths) != 4 or any(int(d) < 1 for d in self.depths) or self.neck_depth < 1:
            raise InvalidInputError(f"depths must be 4 integers >= 1, got {self.depths}/{self.neck_depth}")
        for name in ("num_classes", "reg_max", "num_masks", "proto_channels"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_scale(cls, scale: str, num_classes: int = 1, reg_max: int = 16) -> "YoloV8SegConfig":
        """Config of a standard scale ('n', 's', 'm', 'l', 'x')."""
        if scale not in SCALES:
            raise InvalidInputError(f"unknown YOLOv8 scale {scale!r}; choose one of {sorted(SCALES)}")
        depth, width, max_channels = SCALES[scale]

        def channels(c: int) -> int:
            return math.ceil(min(c, max_channels) * width / 8) * 8

        return cls(
            widths=tuple(channels(c) for c in _BASE_WIDTHS),  # type: ignore[arg-type]
            depths=tuple(max(round(d * depth), 1) for d in _BASE_DEPTHS),  # type: ignore[arg-type]
            neck_depth=max(round(_BASE_NECK_DEPTH * depth), 1),
            num_classes=num_classes,
            reg_max=reg_max,
            proto_channels=channels(_BASE_PROTO),
        )

    def to_dict(self) -> dict:
        """JSON-ready fields; ``layer_bn_eps`` becomes a {module path: eps} object."""
        values = asdict(self)
        values["layer_bn_eps"] = dict(self.layer_bn_eps)
        return values

    @classmethod
    def from_dict(cls, data: Mapping) -> "YoloV8SegConfig":
        try:
            values = dict(data)
            values["widths"] = tuple(int(v) for v in values["widths"])
            values["depths"] = tuple(int(v) for v in values["depths"])
            values["layer_bn_eps"] = _layer_eps(values.get("layer_bn_eps") or {})
            return cls(**values)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"invalid model config: {exc}") from exc


def _layer_eps(per_layer: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((str(name), float(eps)) for name, eps in dict(per_layer).items()))


def infer_config(state: Mapping[str, torch.Tensor], bn_eps: float | Mapping[str, float] = 1e-3) -> YoloV8SegConfig:
    """Infer the architecture from a state dict in fastsam's naming (see :mod:`fastsam.model.yolov8_seg`).

    ``bn_eps`` is one epsilon for every batch norm, or {batch-norm module path: eps} per layer (the most common
    value becomes the default; layers not named get it).
    """

    def out_channels(key: str) -> int:
        if key not in state:
            raise CheckpointError(f"not a YOLOv8-seg model: weight {key!r} is missing")
        return int(state[key].shape[0])

    def count_bottlenecks(prefix: str) -> int:
        indices = {int(k[len(prefix):].split(".", 1)[0]) for k in state if k.startswith(prefix)}
        if not indices:
            raise CheckpointError(f"not a YOLOv8-seg model: no bottlenecks under {prefix!r}")
        return max(indices) + 1

    levels = ("stem", "down2", "down3", "down4", "down5")
    widths = tuple(out_channels(f"backbone.{name}.conv.weight") for name in levels)
    depths = tuple(count_bottlenecks(f"backbone.stage{i}.m.") for i in (2, 3, 4, 5))
    if isinstance(bn_eps, Mapping):
        values = list(bn_eps.values())
        default = max(values, key=values.count) if values else 1e-3
        layer_eps = _layer_eps({name: eps for name, eps in bn_eps.items() if eps != default})
    else:
        default, layer_eps = bn_eps, ()
    return YoloV8SegConfig(
        widths=widths,  # type: ignore[arg-type]
        depths=depths,  # type: ignore[arg-type]
        neck_depth=count_bottlenecks("neck.top_down_p4.m."),
        num_classes=out_channels("head.cls_convs.0.2.weight"),
        reg_max=out_channels("head.box_convs.0.2.weight") // 4,
        num_masks=out_channels("head.coef_convs.0.2.weight"),
        proto_channels=out_channels("head.proto.cv1.conv.weight"),
        bn_eps=default,
        layer_bn_eps=layer_eps,
    )
