"""Per-box mask assembly against a direct full-tensor reference of the original's mask processing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastsam.inference.masks import PrototypeMasks
from fastsam.inference.runs_kernel import retina_runs, threshold_runs


def _reference_retina(protos, coef, boxes, image_size):
    # The original: all logits upsampled at once to the image, cropped to each box, thresholded at 0.
    c, mh, mw = protos.shape
    logits = (coef @ protos.reshape(c, -1)).reshape(-1, mh, mw)
    h, w = image_size
    gain = min(mh / h, mw / w)
    pad_x, pad_y = (mw - w * gain) / 2, (mh - h * gain) / 2
    logits = logits[:, int(pad_y):int(mh - pad_y), int(pad_x):int(mw - pad_x)]
    up = F.interpolate(logits[None], (h, w), mode="bilinear", align_corners=False)[0]
    cols, rows = torch.arange(w)[None, None], torch.arange(h)[None, :, None]
    x1, y1, x2, y2 = boxes[:, :, None].unbind(1)
    inside = (cols >= x1[:, None]) & (cols < x2[:, None]) & (rows >= y1[:, None]) & (rows < y2[:, None])
    return ((up * inside) > 0).numpy()


def _reference_input_resolution(protos, coef, input_boxes, input_size, image_size):
    # The original's non-retina path (crop on the proto grid, upsample to the input, threshold), then the
    # unpadded part of the input resized to the image by nearest neighbour.
    c, mh, mw = protos.shape
    ih, iw = input_size
    logits = (coef @ protos.reshape(c, -1)).reshape(-1, mh, mw)
    scaled = input_boxes.clone()
    scaled[:, [0, 2]] *= mw / iw
    scaled[:, [1, 3]] *= mh / ih
    cols, rows = torch.arange(mw)[None, None], torch.arange(mh)[None, :, None]
    x1, y1, x2, y2 = scaled[:, :, None].unbind(1)
    inside = (cols >= x1[:, None]) & (cols < x2[:, None]) & (rows >= y1[:, None]) & (rows < y2[:, None])
    up = F.interpolate((logits * inside)[None], (ih, iw), mode="bilinear", align_corners=False)[0] > 0
    h, w = image_size
    gain = min(ih / h, iw / w)
    top, left = int((ih - h * gain) / 2), int((iw - w * gain) / 2)
    bottom, right = int(ih - (ih - h * gain) / 2), int(iw - (iw - w * gain) / 2)
    crop = up[:, top:bottom, left:right].numpy().astype(np.uint8)
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in crop]).astype(bool)


def _case(seed: int, image_size: tuple[int, int], input_size: tuple[int, int], n: int = 12):
    gen = torch.Generator().manual_seed(seed)
    mh, mw = input_size[0] // 4, input_size[1] // 4
    protos = torch.randn(32, mh, mw, generator=gen)
    coef = torch.randn(n, 32, generator=gen) * 0.3
    h, w = image_size
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.8, h * 0.8])
    wh = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6]) + 2
    boxes = torch.cat((xy, (xy + wh).minimum(torch.tensor([float(w), float(h)]))), 1)
    gain = min(input_size[0] / h, input_size[1] / w)
    input_boxes = boxes * gain
    input_boxes[:, [1, 3]] += (input_size[0] - h * gain) / 2
    input_boxes[:, [0, 2]] += (input_size[1] - w * gain) / 2
    boxes[0] = torch.tensor([0.0, 0.0, float(w), float(h)])  # a full-image box, as the full-image rule makes
    return protos, coef, boxes, input_boxes


@pytest.mark.parametrize("seed,image_size,input_size", [
    (0, (603, 1072), (576, 1024)),
    (1, (1500, 2250), (704, 1024)),
    (2, (480, 640), (768, 1024)),
    (3, (333, 101), (320, 96)),
])
@pytest.mark.parametrize("compiled", [True, False])
def test_retina_masks_equal_full_tensor_reference(seed, image_size, input_size, compiled):
    protos, coef, boxes, input_boxes = _case(seed, image_size, input_size)
    ours = PrototypeMasks(protos, coef, boxes, input_boxes, input_size, image_size, retina=True, compiled=compiled)
    assert ours.compiled == (compiled and threshold_runs is not None)
    reference = _reference_retina(protos, coef, boxes, image_size)
    for i in range(len(ours)):
        mask = ours.encode(i).decode()
        differing = np.count_nonzero(mask != reference[i])
        # Float rounding may flip a pixel whose logit is ~0; anything more is a real difference.
        assert differing <= max(2, reference[i].sum() // 10000), f"instance {i}: {differing} pixels differ"


@pytest.mark.parametrize("seed,image_size,input_size", [(4, (603, 1072), (576, 1024)), (5, (480, 640), (768, 1024))])
@pytest.mark.parametrize("compiled", [True, False])
def test_input_resolution_masks_equal_reference(seed, image_size, input_size, compiled):
    protos, coef, boxes, input_boxes = _case(seed, image_size, input_size)
    ours = PrototypeMasks(protos, coef, boxes, input_boxes, input_size, image_size, retina=False, compiled=compiled)
    reference = _reference_input_resolution(protos, coef, input_boxes, input_size, image_size)
    for i in range(len(ours)):
        mask = ours.encode(i).decode()
        union = np.logical_or(mask, reference[i]).sum()
        iou = 1.0 if union == 0 else np.logical_and(mask, reference[i]).sum() / union
        assert iou >= 0.995, f"instance {i}: IoU {iou:.4f}"


def test_empty_box_gives_empty_mask():
    protos, coef, boxes, input_boxes = _case(6, (100, 120), (96, 128), n=2)
    boxes[1] = torch.tensor([50.0, 40.0, 50.0, 60.0])  # zero width
    masks = PrototypeMasks(protos, coef, boxes, input_boxes, (96, 128), (100, 120), retina=True)
    assert masks.encode(1).area == 0


def _assert_kernel_matches_tensor_path(protos, coef, boxes, input_boxes, threads: int,
                                      input_size=(576, 1024), image_size=(603, 1072)) -> PrototypeMasks:
    # Every instance's runs from the compiled kernel (encode_all over `threads`) equal the tensor path's.
    fast = PrototypeMasks(protos, coef, boxes, input_boxes, input_size, image_size, compiled=True)
    slow = PrototypeMasks(protos, coef, boxes, input_boxes, input_size, image_size, compiled=False)
    for i, a in enumerate(fast.encode_all(threads=threads)):
        b = slow.encode(i)
        np.testing.assert_array_equal(a.starts, b.starts)
        np.testing.assert_array_equal(a.ends, b.ends)
    return fast


@pytest.mark.skipif(threshold_runs is None, reason="numba not installed")
def test_kernel_and_tensor_paths_give_identical_runs():
    protos, coef, boxes, input_boxes = _case(7, (603, 1072), (576, 1024), n=20)
    boxes[1] = torch.tensor([0.0, 0.0, 1072.0, 603.0])  # full height: runs continue across columns
    _assert_kernel_matches_tensor_path(protos, coef, boxes, input_boxes, threads=2)


@pytest.mark.skipif(threshold_runs is None, reason="numba not installed")
@pytest.mark.parametrize("image_size,input_size", [((603, 1072), (576, 1024)), ((1500, 2250), (704, 1024)),
                                                   ((90, 130), (704, 1024))])
def test_kernel_matches_tensor_path_on_smooth_masks(image_size, input_size):
    # Real masks are smooth: most proto cells of a box are all on or all off, and the kernel settles them from
    # their four grid values without interpolating. Prototypes of low frequency give such masks, at image
    # sizes above the grid and (90 x 130) below it, where consecutive output rows skip grid rows.
    gen = torch.Generator().manual_seed(11)
    protos, coef, boxes, input_boxes = _case(11, image_size, input_size, n=16)
    mh, mw = protos.shape[1:]
    ys, xs = torch.meshgrid(torch.linspace(0, 1, mh), torch.linspace(0, 1, mw), indexing="ij")
    frequencies = torch.rand(32, 2, generator=gen) * 6
    phases = torch.rand(32, 1, 1, generator=gen) * 6.3
    protos = torch.sin(frequencies[:, :1, None] * 6.3 * ys + frequencies[:, 1:, None] * 6.3 * xs + phases)
    # Infinite logits on the image's first grid column: at the left edge its weight is exactly 0 and inf * 0 is
    # NaN, so those pixels are off in the tensor path, though every value of the cell is positive.
    protos[3, 10:30, 1] = float("inf")
    coef[:, 3] = coef[:, 3].abs() + 0.1
    fast = _assert_kernel_matches_tensor_path(protos, coef, boxes, input_boxes, threads=2, input_size=input_size,
                                              image_size=image_size)
    runs = sum(m.starts.size for m in fast.encode_all())
    columns = sum(max(0, int(b[2]) - int(b[0])) for b in boxes.tolist())
    assert runs < 3 * columns  # smooth indeed: a few runs per column


@pytest.mark.skipif(threshold_runs is None, reason="numba not installed")
def test_kernel_gives_the_same_runs_whatever_groups_its_logits_are_computed_in():
    # Instances' logits are computed in groups that share reads of the prototypes (bounded by logit_cells);
    # one instance per group, groups of a few, and all in one must give the same runs (the tests above compare
    # the default grouping with the tensor path). Overlapping boxes, an empty one and one off the grid's left.
    protos, coef, boxes, input_boxes = _case(12, (603, 1072), (576, 1024), n=12)
    boxes[4] = torch.tensor([300.0, 200.0, 300.0, 400.0])
    boxes[7] = torch.tensor([0.0, 0.0, 40.0, 603.0])
    masks = PrototypeMasks(protos, coef, boxes, input_boxes, (576, 1024), (603, 1072), compiled=True)
    args = (masks.protos_t, masks.coefficients, masks.image_boxes, masks.crop_top, masks.crop_left,
            masks.crop_bottom - masks.crop_top, masks.crop_right - masks.crop_left, 603, 1072)
    one_group = retina_runs(*args, 1 << 40)
    assert one_group[2][5] - one_group[2][4] == 0 and one_group[0].size > 1000
    for logit_cells in (1, 3000, 20000):
        for got, expected in zip(retina_runs(*args, logit_cells), one_group):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(threshold_runs is None, reason="numba not installed")
def test_kernel_and_tensor_paths_agree_where_logits_are_zero_tiny_or_nan():
    # The kernel settles whole segments from their two proto values; near zero (exact zeros, values whose
    # products with a weight underflow) it must fall back to the per-pixel arithmetic and still agree.
    protos, coef, boxes, input_boxes = _case(8, (603, 1072), (576, 1024), n=10)
    protos[:, 40:60, 50:90] = 0.0
    protos[:, 80:100, 100:180] *= 1e-37
    protos[:, 100:140, 0:250] *= 1e-44  # subnormal logits: a weight times one can round to zero
    protos[:, 50:52, 60:70] = float("nan")  # NaN logits are off, as in the tensor path
    _assert_kernel_matches_tensor_path(protos, coef, boxes, input_boxes, threads=1)


@pytest.mark.skipif(threshold_runs is None, reason="numba not installed")
def test_kernel_keeps_nan_pixels_off_in_columns_otherwise_all_on():
    # Columns whose logits are all positive are written as one run without visiting their pixels; a NaN among
    # them must still leave its pixels off, as the tensor path does.
    protos, coef, boxes, input_boxes = _case(9, (603, 1072), (576, 1024), n=3)
    coef[:] = 0.0
    coef[:, 0] = 1.0
    protos[0] = 1.0
    protos[0, 50:52, 60:70] = float("nan")
    fast = _assert_kernel_matches_tensor_path(protos, coef, boxes, input_boxes, threads=1)
    assert fast.encode(0).area < 603 * 1072  # the full-image box holds the NaN hole


def test_probability_crops_threshold_to_the_masks(tiny_model):
    from fastsam.eval.edge_maps import fastsam_edge_map
    from fastsam.inference.predictor import Predictor
    from fastsam.model.checkpoint import load_weights

    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (150, 210, 3), dtype=np.uint8)
    result = Predictor(load_weights(tiny_model), imgsz=224, conf=0.0, max_det=12, keep_prototypes=True)(image)
    assert result.prototypes is not None and len(result) == 12
    for index, rle in enumerate(result.rles):
        probability, x0, y0 = result.prototypes.probability_crop(index)
        h, w = probability.shape
        assert probability.dtype == np.float32 and 0 <= probability.min() and probability.max() <= 1
        mask = rle.decode_region(x0, y0, x0 + w, y0 + h)
        # Only logits within float rounding of zero may land on the other side of 0.5.
        assert np.mean((probability > 0.5) != mask) < 1e-3
        assert rle.area == mask.sum()  # nothing outside the box
    edges = fastsam_edge_map(result)
    assert edges.shape == result.image_size and 0 <= edges.min() and edges.max() <= 1 and edges.max() > 0
    assert Predictor(load_weights(tiny_model), imgsz=224)(image).prototypes is None
