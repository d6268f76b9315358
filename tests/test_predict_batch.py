"""Several images per forward pass give exactly the one-image results; bf16 stays close to fp32."""

from __future__ import annotations

import numpy as np
import pytest

from fastsam.errors import InvalidInputError
from fastsam.eval.matching import matched_mask_ious
from fastsam.inference.predictor import Predictor
from fastsam.model.checkpoint import load_weights


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    # Two shapes that letterbox alike, one that does not, then the first shape again.
    shapes = [(120, 160), (121, 160), (160, 96), (120, 160)]
    images = []
    for h, w in shapes:
        image = np.full((h, w, 3), 40, np.uint8)
        y, x = rng.integers(10, h // 2), rng.integers(10, w // 2)
        image[y:y + h // 3, x:x + w // 3] = rng.integers(100, 255, 3)
        images.append(image)
    return images


def _same(a, b) -> None:
    assert a.image_size == b.image_size
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert len(a.rles) == len(b.rles)
    for ra, rb in zip(a.rles, b.rles):
        np.testing.assert_array_equal(ra.starts, rb.starts)
        np.testing.assert_array_equal(ra.ends, rb.ends)


@pytest.mark.parametrize("batch_size, budget", [(8, 4096), (2, 4096), (8, 0.2)])
def test_batches_equal_single_images(tiny_model, batch_size, budget):
    predictor = Predictor(load_weights(tiny_model), imgsz=160, conf=0.0, max_det=20)
    images = _images()
    singles = [predictor(image) for image in images]
    passes = []
    model = predictor.model
    predictor.model = lambda batch: passes.append(batch.shape[0]) or model(batch)
    batched = list(predictor.predict_batch(images, batch_size=batch_size, memory_budget_mb=budget))
    assert len(batched) == len(images)
    for single, result in zip(singles, batched):
        _same(single, result)
        assert len(single) == 20
    # Same-shape neighbours share a pass unless the batch size or the memory budget forbids it.
    expected = {(8, 4096): [2, 1, 1], (2, 4096): [2, 1, 1], (8, 0.2): [1, 1, 1, 1]}[(batch_size, budget)]
    assert passes == expected


def test_batch_arguments_are_checked(tiny_model):
    predictor = Predictor(load_weights(tiny_model), imgsz=160)
    with pytest.raises(InvalidInputError, match="batch_size"):
        list(predictor.predict_batch(_images(), batch_size=0))
    with pytest.raises(InvalidInputError, match="memory_budget_mb"):
        list(predictor.predict_batch(_images(), memory_budget_mb=-1))
    with pytest.raises(InvalidInputError, match="sequence of images"):
        list(predictor.predict_batch(_images()[0]))
    with pytest.raises(InvalidInputError, match="precision"):
        Predictor(load_weights(tiny_model), precision="fp8")


def test_bf16_masks_agree_with_fp32(tiny_model):
    # A random network's mask logits hover around zero, so agreement is looser than on trained weights.
    image = _images()[0]
    fp32 = Predictor(load_weights(tiny_model), imgsz=160, conf=0.0, max_det=20)(image)
    bf16 = Predictor(load_weights(tiny_model), imgsz=160, conf=0.0, max_det=20, precision="bf16")(image)
    assert len(bf16) == len(fp32)
    ious = matched_mask_ious([m.to_coco() for m in bf16.rles], [m.to_coco() for m in fp32.rles])
    assert ious.mean() > 0.6
    np.testing.assert_allclose(np.sort(bf16.scores), np.sort(fp32.scores), atol=0.05)
