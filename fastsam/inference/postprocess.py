"""From network predictions to detections in image pixels, reproducing FastSAM's post-processing:
confidence filter, class-agnostic NMS, the full-image-box rule and box rescaling."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastsam.inference.nms import box_iou, nms

BORDER_SNAP_PIXELS = 20
FULL_IMAGE_IOU = 0.9
MAX_NMS_CANDIDATES = 30000


@dataclass
class Detections:
    """N detections of one image. boxes (N, 4) xyxy float32; scores (N,); coefficients (N, nm)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    coefficients: torch.Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def select_detections(pred: torch.Tensor, num_classes: int, conf: float, iou: float, max_det: int) -> Detections:
    """pred (4 + nc + nm, A) for one image -> detections (boxes in network-input pixels), best first."""
    box_xywh, cls, coef = pred.split((4, num_classes, pred.shape[0] - 4 - num_classes), 0)
    score, _ = cls.max(0)
    candidates = torch.nonzero(score > conf).squeeze(1)  # anchors, in order: ties in score keep it
    score = score[candidates]
    order = torch.sort(score, descending=True, stable=True).indices[:MAX_NMS_CANDIDATES]
    anchors, score = candidates[order], score[order]
    xy, wh = box_xywh[:2, anchors].T, box_xywh[2:, anchors].T
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), 1)
    kept = nms(boxes, score, iou, max_keep=max_det)
    # Only the kept anchors' mask coefficients are read (at conf 0.001 the candidates are thousands).
    return Detections(boxes[kept].contiguous(), score[kept].contiguous(), coef[:, anchors[kept]].T.contiguous())


def snap_to_full_image(det: Detections, input_size: tuple[int, int]) -> None:
    """FastSAM's full-image-box rule, in place and in network-input pixels.

    Every box edge within ``BORDER_SNAP_PIXELS`` of the input border is moved onto it (this changes the boxes
    that later crop the masks), then each box whose IoU with the whole input exceeds ``FULL_IMAGE_IOU`` becomes
    exactly the whole input.
    """
    if not len(det):
        return
    h, w = input_size
    b = det.boxes
    b[:, 0] = torch.where(b[:, 0] < BORDER_SNAP_PIXELS, torch.zeros_like(b[:, 0]), b[:, 0])
    b[:, 1] = torch.where(b[:, 1] < BORDER_SNAP_PIXELS, torch.zeros_like(b[:, 1]), b[:, 1])
    b[:, 2] = torch.where(b[:, 2] > w - BORDER_SNAP_PIXELS, torch.full_like(b[:, 2], w), b[:, 2])
    b[:, 3] = torch.where(b[:, 3] > h - BORDER_SNAP_PIXELS, torch.full_like(b[:, 3], h), b[:, 3])
    whole = torch.tensor([0.0, 0.0, float(w), float(h)], dtype=b.dtype)
    b[box_iou(whole, b) > FULL_IMAGE_IOU] = whole


def scale_boxes_to_image(boxes: torch.Tensor, input_size: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """Map xyxy boxes from network-input pixels to image pixels, clipped to the image.

    The padding is recomputed from the two sizes with the original's rounding (it can differ from the
    letterbox's own padding by one pixel); that is what the released implementation does.
    """
    gain = min(input_size[0] / image_size[0], input_size[1] / image_size[1])
    pad_x = round((input_size[1] - image_size[1] * gain) / 2 - 0.1)
    pad_y = round((input_size[0] - image_size[0] * gain) / 2 - 0.1)
    out = boxes.clone()
    out[:, [0, 2]] -= pad_x
    out[:, [1, 3]] -= pad_y
    out /= gain
    out[:, [0, 2]] = out[:, [0, 2]].clamp(0, image_size[1])
    out[:, [1, 3]] = out[:, [1, 3]].clamp(0, image_size[0])
    return out
