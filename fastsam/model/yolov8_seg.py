"""The YOLOv8-seg network that FastSAM uses for its all-instance stage."""

from __future__ import annotations

import torch
from torch import nn

from fastsam.model.backbone import Backbone
from fastsam.model.blocks import ConvBNAct, set_batch_norm_eps
from fastsam.model.config import YoloV8SegConfig
from fastsam.model.head import HeadOutput, SegmentHead, decode_predictions
from fastsam.model.neck import PANNeck

# Layer index in ultralytics' flat `model.N` layout -> module path here. Layers 10, 11, 13, 14, 17 and 20
# (upsample/concat) hold no weights.
ULTRALYTICS_LAYER_NAMES: dict[int, str] = {
    0: "backbone.stem", 1: "backbone.down2", 2: "backbone.stage2", 3: "backbone.down3", 4: "backbone.stage3",
    5: "backbone.down4", 6: "backbone.stage4", 7: "backbone.down5", 8: "backbone.stage5", 9: "backbone.sppf",
    12: "neck.top_down_p4", 15: "neck.top_down_p3", 16: "neck.down_p3", 18: "neck.bottom_up_p4",
    19: "neck.down_p4", 21: "neck.bottom_up_p5", 22: "head",
}
_HEAD_BRANCHES = {"cv2": "box_convs", "cv3": "cls_convs", "cv4": "coef_convs"}


def rename_ultralytics_key(key: str) -> str | None:
    """Map an ultralytics state-dict key ('model.22.cv2.0.0.conv.weight') to fastsam's name
    ('head.box_convs.0.0.conv.weight'); None for entries fastsam does not keep (the fixed DFL weights)."""
    parts = key.split(".")
    if len(parts) < 3 or parts[0] != "model" or not parts[1].isdigit():
        raise KeyError(key)
    index = int(parts[1])
    if index not in ULTRALYTICS_LAYER_NAMES:
        raise KeyError(key)
    rest = parts[2:]
    if index == 22:
        if rest[0] == "dfl":
            return None
        rest = [_HEAD_BRANCHES.get(rest[0], rest[0])] + rest[1:]
    return ".".join([ULTRALYTICS_LAYER_NAMES[index]] + rest)


class YoloV8Seg(nn.Module):
    """YOLOv8 instance-segmentation network.

    Input: (B, 3, H, W) RGB in [0, 1], H and W multiples of 32. In eval mode returns
    ``(predictions, protos)``: predictions (B, 4 + nc + nm, A) as produced by :func:`decode_predictions`,
    protos (B, nm, H/4, W/4). In train mode returns the raw :class:`HeadOutput`.
    """

    def __init__(self, cfg: YoloV8SegConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.neck = PANNeck(cfg)
        self.head = SegmentHead(cfg)
        set_batch_norm_eps(self, cfg.bn_eps, cfg.layer_bn_eps)

    def forward(self, images: torch.Tensor) -> HeadOutput | tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.neck(self.backbone(images)))
        if self.training:
            return out
        return decode_predictions(out, self.cfg.reg_max), out.protos

    def fuse(self) -> "YoloV8Seg":
        """Fold every batch norm into its convolution for faster inference. Returns self."""
        for module in self.modules():
            if isinstance(module, ConvBNAct):
                module.fuse()
        return self
