"""The bf16 network on oneDNN (prepacked weights, SiLU fused into the convolutions, C2f's split as two
convolutions) computes what the eager bf16 network computes, for any input shape, and copies cleanly."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from fastsam.inference.precision import PACKED_SHAPES, InferenceModel, _Float32Layer, _OneDnnC2f, _OneDnnConv
from fastsam.model.blocks import C2f, ConvBNAct
from fastsam.model.checkpoint import load_weights

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")


def _pair(tiny_model) -> tuple[InferenceModel, InferenceModel]:
    fused = load_weights(tiny_model).eval().fuse()
    return InferenceModel(fused, "bf16"), InferenceModel(fused, "bf16", onednn=False)


def _assert_close_to_eager(onednn: InferenceModel, eager: InferenceModel, x: torch.Tensor) -> None:
    with torch.inference_mode():
        (pred, protos), (pred_ref, protos_ref) = onednn(x), eager(x)
    assert pred.dtype == protos.dtype == torch.float32
    assert pred.shape == pred_ref.shape and protos.shape == protos_ref.shape
    # The two differ by bf16 rounding only: eager rounds each convolution's output before its SiLU as well.
    scale = pred_ref.abs().amax(dim=(0, 2), keepdim=True).clamp_min(1.0)
    assert ((pred - pred_ref).abs() / scale).amax() < 0.1
    assert (pred - pred_ref).abs().mean() < 0.01 * pred_ref.abs().mean() + 1e-3
    assert (protos - protos_ref).abs().mean() < 0.05 * protos_ref.abs().mean()


def test_every_fused_block_runs_on_onednn(tiny_model):
    onednn, eager = _pair(tiny_model)
    modules = list(onednn.net.modules())
    assert not [m for m in modules if isinstance(m, (C2f, ConvBNAct, torch.nn.Conv2d))]
    assert sum(isinstance(m, _OneDnnC2f) for m in modules) == sum(isinstance(m, C2f) for m in eager.net.modules())
    # The output layers (see fastsam.inference.precision) stay in float32, the rest runs in bf16.
    float32 = {id(m) for layer in modules if isinstance(layer, _Float32Layer) for m in layer.modules()}
    head = onednn.net.head
    assert len(float32) == 2 * (3 * len(head.box_convs) + 1)
    assert all(m.weight.dtype == (torch.float32 if id(m) in float32 else torch.bfloat16)
               for m in modules if isinstance(m, _OneDnnConv))
    # Eager bf16 is left as it was, and fp32 never switches.
    assert not [m for m in eager.net.modules() if isinstance(m, _OneDnnConv)]
    fp32 = InferenceModel(load_weights(tiny_model).eval().fuse(), "fp32")
    assert not [m for m in fp32.net.modules() if isinstance(m, _OneDnnConv)]


def test_onednn_matches_eager_bf16_for_several_shapes(tiny_model):
    onednn, eager = _pair(tiny_model)
    torch.manual_seed(1)
    # Weights are packed on the first call; later calls with other shapes and batch sizes reuse them.
    for shape in ((1, 3, 96, 128), (2, 3, 160, 96), (1, 3, 64, 64)):
        _assert_close_to_eager(onednn, eager, torch.rand(shape))


def test_onednn_model_copies_and_pickles_after_use(tiny_model):
    onednn, eager = _pair(tiny_model)
    x = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        first = onednn(x)
    for clone in (copy.deepcopy(onednn), pickle.loads(pickle.dumps(onednn))):
        with torch.inference_mode():
            again = clone(x)
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])


def test_packed_weights_are_kept_for_the_latest_shapes():
    conv = torch.nn.Conv2d(8, 16, 3, padding=1).to(torch.bfloat16)
    layer = _OneDnnConv(conv, silu=True)
    sizes = [8 * k for k in range(1, PACKED_SHAPES + 3)]
    with torch.inference_mode():
        for size in sizes:
            x = torch.randn(1, 8, 8, size, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
            expected = torch.nn.functional.silu(conv(x).float())
            assert (layer(x).float() - expected).abs().max() < 0.05 * expected.abs().max()
    # Only the most recent shapes stay packed, oldest first.
    assert list(layer._packed) == [(1, 8, 8, size) for size in sizes[-PACKED_SHAPES:]]
