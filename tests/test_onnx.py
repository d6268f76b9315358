"""ONNX export and the onnxruntime backend.

- The exported graph matches PyTorch at several input sizes and batch sizes (the anchor grid is not baked).
- The parity tests of tests/test_parity.py run unchanged against ``Predictor(OnnxBackend(...))``: same instance
  counts, matched mean IoU >= 0.99 against the original's goldens, box and point prompts IoU >= 0.98.
- int8 quantization keeps the masks close to fp32 (bound justified at the test).
- Bad files raise fastsam's errors.

Skipped without onnx / onnxruntime; the fixture tests are skipped without ../shared/fixtures. Each checkpoint is
exported once per module (a few seconds each).
"""

from __future__ import annotations

import copy
import functools
import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from fastsam.errors import CheckpointError, FastSAMError, InvalidInputError  # noqa: E402
from fastsam.inference.onnx_backend import (  # noqa: E402
    OnnxBackend, mask_agreement, matched_mask_ious, onnx_backend_for,
)
from fastsam.inference.predictor import Predictor  # noqa: E402
from fastsam.model.checkpoint import load_weights, save_native  # noqa: E402
from fastsam.model.config import YoloV8SegConfig  # noqa: E402
from fastsam.model.onnx_export import (  # noqa: E402
    CONFIG_KEY, QUANT_KEY, OnnxExportError, export_onnx, quantize_onnx, read_metadata, verify_onnx,
)
from fastsam.model.yolov8_seg import YoloV8Seg  # noqa: E402
from tests import test_parity  # noqa: E402
from tests.paths import FIXTURES  # noqa: E402
from tests.test_parity import GOLDENS  # noqa: E402

needs_fixtures = pytest.mark.skipif(not (FIXTURES / "golden_s.json").is_file(), reason="../shared/fixtures not present")


def _small_model(num_classes: int = 1, reg_max: int = 16) -> YoloV8Seg:
    torch.manual_seed(0)
    model = YoloV8Seg(YoloV8SegConfig.from_scale("n", num_classes=num_classes, reg_max=reg_max)).eval()
    # Non-trivial batch-norm statistics, so fusing them is exercised.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    return model


def _relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max()) / max(float(np.abs(ref).max()), 1.0)


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    model = _small_model(num_classes=3, reg_max=26)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx-small") / "small.onnx", sample_size=(320, 256))
    return model, path


# ------------------------------------------------------------------------------------------ export vs torch


@pytest.mark.parametrize("shape", [(1, 3, 448, 640), (1, 3, 640, 384), (2, 3, 256, 320)])
def test_export_matches_torch_at_several_sizes(small_export, shape):
    model, path = small_export
    backend = OnnxBackend(path)
    images = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        predictions, protos = copy.deepcopy(model).fuse()(images)
    got_predictions, got_protos = backend(images)
    anchors = sum((shape[2] // s) * (shape[3] // s) for s in (8, 16, 32))
    assert tuple(got_predictions.shape) == (shape[0], 4 + 3 + 32, anchors) == tuple(predictions.shape)
    assert tuple(got_protos.shape) == (shape[0], 32, shape[2] // 4, shape[3] // 4) == tuple(protos.shape)
    assert got_predictions.dtype == torch.float32 and got_protos.dtype == torch.float32
    # Boxes are in pixels (up to ~640), scores in [0, 1]: compare each row group at its own scale.
    assert _relative_error(got_predictions[:, :4].numpy(), predictions[:, :4].numpy()) < 1e-3
    assert np.abs(got_predictions[:, 4:7].numpy() - predictions[:, 4:7].numpy()).max() < 1e-3
    assert _relative_error(got_predictions[:, 7:].numpy(), predictions[:, 7:].numpy()) < 1e-3
    assert _relative_error(got_protos.numpy(), protos.numpy()) < 1e-3


def test_export_leaves_model_untouched_and_stores_config(small_export):
    model, path = small_export
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # a copy was fused
    metadata = read_metadata(path)
    assert YoloV8SegConfig.from_dict(json.loads(metadata[CONFIG_KEY])) == model.cfg
    backend = OnnxBackend(path)
    assert backend.num_classes == 3 and backend.config == model.cfg and backend.quantization is None
    assert backend.fixed_size is None


def test_static_export_is_fixed_size(tmp_path):
    model = _small_model()
    path = export_onnx(model, tmp_path / "static.onnx", dynamic=False, sample_size=(256, 320))
    backend = OnnxBackend(path)
    assert backend.fixed_size == (256, 320)
    predictions, _ = backend(torch.rand(1, 3, 256, 320))
    assert predictions.shape[-1] == 32 * 40 + 16 * 20 + 8 * 10
    with pytest.raises(InvalidInputError, match="exported for 256x320"):
        backend(torch.rand(1, 3, 320, 320))


def test_verify_catches_a_wrong_model(small_export):
    model, path = small_export
    other = _small_model(num_classes=3, reg_max=26)
    with torch.no_grad():
        other.head.proto.cv3.conv.weight.mul_(2)
    with pytest.raises(OnnxExportError, match="differ from PyTorch"):
        verify_onnx(other, path)


@pytest.mark.skipif(os.environ.get("FASTSAM_SLOW_TESTS") != "1",
                    reason="dynamo export takes ~1 min; set FASTSAM_SLOW_TESTS=1")
def test_dynamo_fallback_dynamic_sizes(tmp_path, monkeypatch):
    """A torch without the TorchScript exporter: "auto" falls back to dynamo, still with dynamic sizes."""
    pytest.importorskip("onnxscript")
    from fastsam.model import onnx_export

    def removed(*args, **kwargs):
        raise RuntimeError("TorchScript-based ONNX export is not available")

    monkeypatch.setattr(onnx_export, "_export_torchscript", removed)
    model = _small_model()
    path = export_onnx(model, tmp_path / "dynamo.onnx")  # verifies two sizes itself
    assert "dynamo" in read_metadata(path)["fastsam_exporter"]
    errors = verify_onnx(model, path, sizes=[(640, 480), (224, 736)])
    assert max(errors.values()) < 1e-3


def test_bad_export_arguments(tmp_path):
    model = _small_model()
    with pytest.raises(InvalidInputError, match="multiples of 32"):
        export_onnx(model, tmp_path / "x.onnx", sample_size=(300, 320))
    with pytest.raises(InvalidInputError, match="exporter"):
        export_onnx(model, tmp_path / "x.onnx", exporter="tflite")
    with pytest.raises(InvalidInputError, match="YoloV8Seg"):
        export_onnx(torch.nn.Conv2d(3, 3, 1), tmp_path / "x.onnx")
    with pytest.raises(InvalidInputError, match="directory"):
        export_onnx(model, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written


# ------------------------------------------------------------------------------------------ bad files


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        OnnxBackend(tmp_path / "absent.onnx")
    with pytest.raises(CheckpointError, match="not a file"):
        OnnxBackend(tmp_path)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        OnnxBackend(tmp_path / "empty.onnx")


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"this is not a protobuf \x00\xff" * 50)
    with pytest.raises(CheckpointError, match="not a loadable ONNX model"):
        OnnxBackend(path)
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        quantize_onnx(path, tmp_path / "q.onnx", mode="dynamic")


def test_foreign_onnx_model(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(CheckpointError, match="not a fastsam export"):
        OnnxBackend(path)
    with pytest.raises(InvalidInputError, match="not a fastsam ONNX export"):
        quantize_onnx(path, tmp_path / "q.onnx", mode="dynamic")
    with pytest.raises(CheckpointError, match="not found"):
        quantize_onnx(tmp_path / "absent.onnx", tmp_path / "q.onnx", mode="dynamic")


def test_errors_are_fastsam_errors_and_inputs_checked(small_export):
    _, path = small_export
    backend = OnnxBackend(path, threads=1)
    with pytest.raises(InvalidInputError, match="multiples of 32"):
        backend(torch.rand(1, 3, 100, 128))
    with pytest.raises(InvalidInputError):
        backend(torch.rand(3, 64, 64))
    with pytest.raises(InvalidInputError):
        OnnxBackend(path, threads=0)
    assert issubclass(CheckpointError, FastSAMError)


def test_backend_for_checkpoint_exports_once(tmp_path, model_cache):
    weights = save_native(_small_model(), tmp_path / "tiny.safetensors")
    first = onnx_backend_for(weights)
    assert first.path.parent == model_cache / "onnx" and first.path.suffix == ".onnx"
    stamp = first.path.stat().st_mtime_ns
    second = onnx_backend_for(weights)
    assert second.path == first.path and second.path.stat().st_mtime_ns == stamp
    assert onnx_backend_for(first.path).path == first.path  # an .onnx path opens as is


# ------------------------------------------------------------------------------------------ parity on goldens


@pytest.fixture(scope="module")
def onnx_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx-parity")
    return {name: export_onnx(load_weights(FIXTURES / name), folder / f"{name}.onnx") for name in GOLDENS
            if (FIXTURES / name).is_file()}


@pytest.fixture(scope="module")
def predictors(onnx_paths) -> dict[str, Predictor]:
    return {name: Predictor(OnnxBackend(path)) for name, path in onnx_paths.items()}


@pytest.fixture(scope="module")
def results(predictors):
    """Same contract as tests/test_parity.py's fixture, answered by the onnxruntime backend."""
    return test_parity.cached_results(predictors)


def _against_this_backend(test):
    """tests/test_parity.py's test function, unchanged (same parametrization over CASES, same bars), collected
    here so that it takes this module's ``results`` fixture; the original function object is not modified."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return test(*args, **kwargs)

    run.pytestmark = [*getattr(test, "pytestmark", []), needs_fixtures.mark]
    return run


test_onnx_everything_matches_original = _against_this_backend(test_parity.test_everything_matches_original)
test_onnx_box_prompts_match_original = _against_this_backend(test_parity.test_box_prompts_match_original)
test_onnx_point_prompts_match_original = _against_this_backend(test_parity.test_point_prompts_match_original)
test_onnx_several_boxes_answer_in_order = _against_this_backend(test_parity.test_several_boxes_answer_in_order)


@needs_fixtures
def test_onnx_backend_reports_num_classes(predictors):
    for name, predictor in predictors.items():
        assert predictor.num_classes == 1 == predictor.model.num_classes


# ------------------------------------------------------------------------------------------ int8


TRAINED = "yolov8n-seg-coco128-ultralytics84.pt"
needs_trained = pytest.mark.skipif(not (FIXTURES / TRAINED).is_file(), reason=f"fixture {TRAINED} absent")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """fp32 export of the checkpoint with learned weights and its fp32 result on dogs.jpg at conf 0.05."""
    folder = tmp_path_factory.mktemp("onnx-int8")
    fp32 = export_onnx(load_weights(FIXTURES / TRAINED), folder / "fp32.onnx")
    reference = Predictor(OnnxBackend(fp32), conf=0.05)(FIXTURES / "images" / "dogs.jpg")
    return fp32, reference


def _agreement(backend: OnnxBackend, reference) -> tuple[np.ndarray, int]:
    quantized = Predictor(backend, conf=0.05)(FIXTURES / "images" / "dogs.jpg")
    matched = matched_mask_ious([r.to_coco() for r in quantized.rles], [r.to_coco() for r in reference.rles])
    print(f"{backend.quantization} vs fp32 on dogs.jpg: {len(quantized)} vs {len(reference)} instances, matched "
          f"mean IoU {matched.mean():.4f}, median {np.median(matched):.4f}")
    return matched, len(quantized)


@needs_trained
def test_int8_static_masks_agree_with_fp32(trained, tmp_path):
    """Static QDQ int8 against fp32 ONNX on dogs.jpg, with the checkpoint that has learned weights (conf 0.05,
    where it finds 37 instances).

    Measured (onnxruntime 1.32, AVX512-VNNI/AMX CPU): every fp32 instance matched at IoU >= 0.5, matched mean
    IoU 0.86, median 0.87; int8 finds ~60 instances since scores sit near the 0.05 threshold. The bound below
    leaves margin for other CPUs' int8 kernels while failing a broken quantization (with the box decoding
    quantized too, nothing matches: 0 instances). The random-weight parity checkpoints are no measure here:
    their mask logits hover around 0 and their scores around the threshold, so even bf16 drops to a mean IoU
    of 0.66-0.88 on them (see benchmarks/onnx_backend.py for the numbers).
    """
    fp32, reference = trained
    calibration = [FIXTURES / "images" / "sa_10039.jpg", FIXTURES / "images" / "000000000009.jpg"]
    int8 = quantize_onnx(fp32, tmp_path / "int8.onnx", mode="static", calibration_images=calibration, imgsz=640)
    assert read_metadata(int8)[QUANT_KEY].startswith("int8-static")
    assert int8.stat().st_size < fp32.stat().st_size / 3
    assert len(reference) == 37
    matched, _ = _agreement(OnnxBackend(int8), reference)
    assert (matched >= 0.5).all()
    assert matched.mean() >= 0.8
    with pytest.raises(InvalidInputError, match="already quantized"):
        quantize_onnx(int8, tmp_path / "twice.onnx", mode="dynamic")


@needs_trained
def test_int8_dynamic_masks_agree_with_fp32(trained, tmp_path):
    fp32, reference = trained
    backend = OnnxBackend(quantize_onnx(fp32, tmp_path / "dyn.onnx", mode="dynamic"))
    assert backend.quantization == "int8-dynamic" and backend.num_classes == 1
    matched, _ = _agreement(backend, reference)
    # Measured 0.89 (34 of 37 matched at IoU >= 0.5, median 0.97).
    assert matched.mean() >= 0.8
    with pytest.raises(InvalidInputError, match="calibration_images"):
        quantize_onnx(fp32, tmp_path / "s.onnx", mode="static")
    with pytest.raises(InvalidInputError, match="mode"):
        quantize_onnx(fp32, tmp_path / "s.onnx", mode="fp8")
    with pytest.raises(InvalidInputError, match="overwrite"):
        quantize_onnx(fp32, fp32, mode="dynamic")


@needs_trained
def test_mask_agreement_report(trained):
    fp32, reference = trained
    backend = OnnxBackend(fp32)
    report = mask_agreement(backend, backend, [FIXTURES / "images" / "dogs.jpg"], conf=0.05)
    assert report["mean_iou"] == 1.0
    assert report["images"][0]["instances"] == report["images"][0]["reference_instances"] == len(reference)
