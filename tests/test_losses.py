"""Loss terms on hand-made cases with known values, and gradients reaching every branch of the network."""

from __future__ import annotations

import math

import pytest
import torch

from fastsam.model.config import YoloV8SegConfig
from fastsam.model.head import HeadOutput
from fastsam.model.yolov8_seg import YoloV8Seg
from fastsam.errors import InvalidInputError
from fastsam.train.losses import (SegmentationLoss, boxes_to_distances, check_mask_margin, distances_to_boxes,
                                  distribution_focal_loss, expand_boxes, pad_targets)

LN2 = math.log(2)


def test_dfl_is_zero_for_a_sharp_prediction_on_the_target_bin_and_log_bins_when_uniform() -> None:
    sharp = torch.full((1, 4, 16), -50.0)
    sharp[..., 3] = 50.0
    assert distribution_focal_loss(sharp, torch.full((1, 4), 3.0)).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 4, 16)
    for target in (3.0, 7.25):
        assert distribution_focal_loss(uniform, torch.full((1, 4), target)).item() == pytest.approx(math.log(16))


def test_dfl_between_two_bins_is_the_binary_entropy_of_the_split() -> None:
    logits = torch.full((1, 4, 8), -60.0)
    logits[..., 2] = logits[..., 3] = 0.0  # half the mass on each neighbour
    assert distribution_focal_loss(logits, torch.full((1, 4), 2.5)).item() == pytest.approx(LN2, abs=1e-6)


def test_box_distance_round_trip_and_clamp() -> None:
    points = torch.tensor([[4.0, 4.0]])
    boxes = torch.tensor([[1.0, 2.0, 9.0, 5.0]])
    ltrb = boxes_to_distances(points, boxes, 15)
    assert ltrb.tolist() == [[3.0, 2.0, 5.0, 1.0]]
    assert torch.equal(distances_to_boxes(points, ltrb), boxes)
    assert boxes_to_distances(points, torch.tensor([[-40.0, 0.0, 5.0, 5.0]]), 15)[0, 0].item() == pytest.approx(14.99)


def _full_prototype_mask_loss(fg: torch.Tensor, gt_index: torch.Tensor, gt_rows: torch.Tensor,
                              gt_boxes: torch.Tensor, masks: torch.Tensor, protos: torch.Tensor, coefs: torch.Tensor,
                              imgsz: tuple[int, int]) -> float:
    """YOLOv8's formula, one positive at a time: BCE on the full mask, zeroed outside the box, averaged over the
    mask, divided by the box's normalised area, averaged over positives."""
    h, w = protos.shape[-2:]
    cols, rows = torch.arange(w).view(1, w), torch.arange(h).view(h, 1)
    terms = []
    for b, a in fg.nonzero().tolist():
        g = gt_index[b, a]
        box = gt_boxes[b, g] * torch.tensor([w / imgsz[1], h / imgsz[0]] * 2)
        inside = (cols >= box[0]) & (cols < box[2]) & (rows >= box[1]) & (rows < box[3])
        logits = torch.einsum("n,nhw->hw", coefs[b, a], protos[b])
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, masks[gt_rows[b, g]], reduction="none")
        area = (gt_boxes[b, g, 2] - gt_boxes[b, g, 0]) * (gt_boxes[b, g, 3] - gt_boxes[b, g, 1]) / (imgsz[0] * imgsz[1])
        terms.append((bce * inside).mean() / area.clamp(min=1e-9))
    return torch.stack(terms).mean().item()


def test_mask_loss_on_box_crops_equals_the_full_prototype_formula() -> None:
    """Evaluating each instance on a window around its box only gives YOLOv8's formula."""
    torch.manual_seed(0)
    imgsz, nm, h = 64, 4, 16
    protos = torch.randn(2, nm, h, h)
    coefs = torch.randn(2, 6, nm)
    fg = torch.tensor([[True, True, False, True, False, False], [False, True, False, False, False, True]])
    gt_index = torch.tensor([[0, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]])
    gt_boxes = torch.tensor([[[3.5, 10.0, 40.2, 33.0], [20.0, 0.0, 64.0, 64.0]], [[0.0, 8.0, 17.0, 30.5], [0.0] * 4]])
    gt_rows = torch.tensor([[0, 1], [2, 0]])
    masks = (torch.rand(3, h, h) > 0.5).float()
    args = (fg, gt_index, gt_rows, gt_boxes, masks, protos, coefs, (imgsz, imgsz))
    assert SegmentationLoss._mask_loss(*args).item() == pytest.approx(_full_prototype_mask_loss(*args), rel=1e-5)


def test_mask_loss_over_many_window_sizes_equals_the_full_prototype_formula() -> None:
    """Random boxes from a cell to the whole prototype (many window buckets, windows pushed back inside the
    border), a degenerate box, and instances with 1 to 5 positives: still YOLOv8's formula."""
    torch.manual_seed(1)
    imgsz, nm, h, b, m, a = 128, 8, 32, 3, 7, 30
    protos, coefs = torch.randn(b, nm, h, h), torch.randn(b, a, nm)
    corners = torch.rand(b, m, 2, 2) * imgsz
    gt_boxes = torch.cat((corners.amin(2), corners.amax(2)), -1)
    gt_boxes[0, 0] = torch.tensor([0.0, 0.0, imgsz, imgsz])
    gt_boxes[1, 1] = torch.tensor([100.0, 3.0, 100.0, 90.0])  # no width: adds nothing
    gt_boxes[2, 2] = torch.tensor([121.3, 119.0, 128.0, 128.0])  # a one-cell corner box
    fg = torch.rand(b, a) < 0.6
    gt_index = torch.randint(0, m, (b, a))
    gt_rows = torch.arange(b * m).view(b, m)
    masks = (torch.rand(b * m, h, h) > 0.5).float()
    args = (fg, gt_index, gt_rows, gt_boxes, masks, protos, coefs, (imgsz, imgsz))
    assert SegmentationLoss._mask_loss(*args).item() == pytest.approx(_full_prototype_mask_loss(*args), rel=1e-5)


def test_expand_boxes_grows_each_side_by_the_fraction_and_clips_to_the_input() -> None:
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 90.0, 100.0, 100.0], [50.0, 5.0, 50.0, 9.0]])
    grown = expand_boxes(boxes, 0.25, (100, 120))  # input 100 high, 120 wide
    assert grown.tolist() == [[5.0, 10.0, 35.0, 70.0], [0.0, 87.5, 120.0, 100.0], [50.0, 4.0, 50.0, 10.0]]
    assert expand_boxes(boxes, 0.0, (100, 120)) is boxes
    for bad in (-0.1, 2.5, True, "0.2", float("nan")):
        with pytest.raises(InvalidInputError, match="mask_margin"):
            check_mask_margin(bad)


def test_mask_margin_supervises_logits_outside_the_box() -> None:
    """Margin 0 (YOLOv8): logits outside the box do not change the loss. With a margin the loss is YOLOv8's
    formula on the grown boxes, so a mask spilling past its box costs more than one that stops at the object."""
    torch.manual_seed(2)
    imgsz, nm, h = 64, 4, 16
    fg = torch.tensor([[True, False]])
    gt_index = torch.zeros(1, 2, dtype=torch.long)
    gt_rows = torch.tensor([[0]])
    gt_boxes = torch.tensor([[[16.0, 16.0, 48.0, 48.0]]])
    masks = torch.zeros(1, h, h)
    masks[0, 4:12, 4:12] = 1  # the object fills its box
    coefs = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0] * 4]])
    inside_only = torch.full((1, nm, h, h), -8.0)
    inside_only[0, 0, 4:12, 4:12] = 8.0
    spilling = inside_only.clone()
    spilling[0, 0, 1:15, 1:15] = 8.0  # positive three cells beyond the box on every side
    spilling[0, 0, 4:12, 4:12] = 8.0

    def loss(protos: torch.Tensor, margin: float) -> float:
        criterion = SegmentationLoss(mask_margin=margin)
        boxes = expand_boxes(gt_boxes, criterion.mask_margin, (imgsz, imgsz))
        args = (fg, gt_index, gt_rows, boxes, masks, protos, coefs, (imgsz, imgsz))
        value = SegmentationLoss._mask_loss(*args).item()
        assert value == pytest.approx(_full_prototype_mask_loss(*args), rel=1e-5, abs=2e-5)  # float32: softplus(8) - 8
        return value

    assert loss(spilling, 0.0) == pytest.approx(loss(inside_only, 0.0), rel=1e-6)
    assert loss(spilling, 0.25) > 100 * loss(inside_only, 0.25)


def test_pad_targets_groups_instances_by_image() -> None:
    batch_idx = torch.tensor([1, 0, 1, 1])
    boxes = torch.arange(16, dtype=torch.float32).view(4, 4)
    padded, valid, rows = pad_targets(batch_idx, boxes, 3)
    assert valid.tolist() == [[True, False, False], [True, True, True], [False, False, False]]
    assert rows[1].tolist() == [0, 2, 3] and rows[0, 0].item() == 1
    assert torch.equal(padded[1, 1], boxes[2])


def _exact_head(imgsz: int, box: tuple[float, float, float, float], reg_max: int = 16) -> HeadOutput:
    """Head outputs whose every anchor predicts ``box`` exactly (each distance split between two bins), class
    logits 0 and zero prototypes."""
    box_logits, class_logits, coefficients = [], [], []
    for stride in (8, 16, 32):
        n = imgsz // stride
        centres = (torch.arange(n, dtype=torch.float32) + 0.5) * stride
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        distances = torch.stack((cx - box[0], cy - box[1], box[2] - cx, box[3] - cy)) / stride  # (4, n, n)
        distances = distances.clamp(0, reg_max - 1.01)
        low = distances.floor()
        probs = torch.zeros(4, reg_max, n, n)
        probs.scatter_(1, low.long().unsqueeze(1), (low + 1 - distances).unsqueeze(1))
        probs.scatter_add_(1, (low.long() + 1).unsqueeze(1), (distances - low).unsqueeze(1))
        box_logits.append(probs.clamp(min=1e-12).log().view(1, 4 * reg_max, n, n))
        class_logits.append(torch.zeros(1, 1, n, n))
        coefficients.append(torch.zeros(1, 32, n, n))
    return HeadOutput(box_logits, class_logits, coefficients, torch.zeros(1, 32, imgsz // 4, imgsz // 4))


def test_segmentation_loss_known_values_for_an_exact_box_prediction() -> None:
    imgsz, box = 64, (16.0, 16.0, 48.0, 48.0)
    masks = torch.zeros(1, 16, 16)
    masks[0, 4:12, 4:12] = 1
    batch = {"batch_idx": torch.tensor([0]), "boxes": torch.tensor([box]), "masks": masks}
    total, items = SegmentationLoss()(_exact_head(imgsz, box), batch)
    box_loss, mask_loss, cls_loss, dfl_loss = items.tolist()
    assert box_loss == pytest.approx(0.0, abs=1e-4)  # CIoU 1 on every positive
    # Every candidate distance is a half-integer: DFL = ln 2 per side; weights cancel in the normalisation.
    assert dfl_loss == pytest.approx(1.5 * LN2, abs=1e-4)
    # Zero prototypes: BCE ln 2 on every pixel; the box crop / box area normalisation leaves ln 2 per positive.
    assert mask_loss == pytest.approx(7.5 * LN2, abs=1e-4)
    # 20 candidates (16 at stride 8, 4 at stride 16), equally aligned: top-10 positives of target score 1;
    # BCE(logit 0) = ln 2 on all 84 anchors, divided by the target-score sum 10.
    assert cls_loss == pytest.approx(0.5 * 84 * LN2 / 10, abs=1e-4)
    assert total.item() == pytest.approx(sum(items.tolist()), abs=1e-4)  # times batch size 1


def test_background_only_batch_has_only_class_loss() -> None:
    batch = {"batch_idx": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4), "masks": torch.zeros(0, 16, 16)}
    head = _exact_head(64, (16.0, 16.0, 48.0, 48.0))
    for logits in head.class_logits:
        logits.fill_(-2.0)
    _, items = SegmentationLoss()(head, batch)
    softplus = math.log1p(math.exp(-2.0))  # BCE of logit -2 against 0
    assert items.tolist() == pytest.approx([0.0, 0.0, 0.5 * 84 * softplus, 0.0], abs=1e-4)


def test_gradients_reach_every_branch() -> None:
    torch.manual_seed(0)
    model = YoloV8Seg(YoloV8SegConfig.from_scale("n")).train()
    images = torch.rand(2, 3, 64, 64)
    masks = torch.zeros(3, 16, 16)
    masks[0, 2:10, 3:12] = masks[1, 8:15, 1:6] = masks[2, 0:6, 0:16] = 1
    batch = {"images": images, "batch_idx": torch.tensor([0, 0, 1]),
             "boxes": torch.tensor([[12.0, 8.0, 48.0, 40.0], [4.0, 32.0, 24.0, 60.0], [0.0, 0.0, 64.0, 24.0]]),
             "masks": masks}
    total, items = SegmentationLoss()(model(images), batch)
    assert torch.isfinite(total) and (items > 0).all()
    total.backward()
    for name in ("head.box_convs.0.2.weight", "head.cls_convs.1.2.weight", "head.coef_convs.2.2.weight",
                 "head.proto.cv3.conv.weight", "backbone.stem.conv.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
