"""Ultralytics' FastSAM API (fastsam.compat.ultralytics): the docs' snippets run verbatim against the goldens in
../shared/fixtures and against brute-force versions of Ultralytics' prompt rules on dense masks; lazy result
views; the same masks from a path, a PIL image and a BGR array. Without ../shared, the tests that need no golden
run on the random tiny model and a synthetic image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fastsam.compat.results import Results
from fastsam.compat.ultralytics import DEFAULTS, FastSAM, FastSAMPredictor, prompt_results
from fastsam.errors import InvalidInputError
from fastsam.eval.matching import matched_mask_ious
from fastsam.prompts.text import clear_clip_cache
from tests.paths import FIXTURES
from tests.test_parity import GOLDENS, decode, golden_record, mask_iou
from tests.test_text import tiny_clip  # noqa: F401  (a module fixture: a random CLIP written locally)

HAVE_FIXTURES = (FIXTURES / "golden_s.json").is_file() and (FIXTURES / "fastsam-n26-parity.pt").is_file()
needs_goldens = pytest.mark.skipif(not HAVE_FIXTURES, reason="../shared/fixtures not present")

DOGS = FIXTURES / "images" / "dogs.jpg"
N26 = str(FIXTURES / "fastsam-n26-parity.pt")


def _union(result: Results) -> np.ndarray:
    return result.masks.data.numpy().any(0) if result.masks is not None else np.zeros(result.orig_shape, bool)


def _point_rule(dense: np.ndarray, points, labels) -> np.ndarray:
    """Ultralytics' point rule on (N, H, W) masks: every instance holding a point takes its label, in order."""
    chosen = np.full(len(dense), not any(labels))
    for (x, y), label in zip(points, labels):
        chosen[dense[:, int(y), int(x)]] = bool(label)
    return chosen


def _box_rule(dense: np.ndarray, box) -> int:
    x1, y1, x2, y2 = (int(v) for v in box)
    inside = dense[:, y1:y2, x1:x2].sum((1, 2)).astype(np.float64)
    return int(np.argmax(inside / ((y2 - y1) * (x2 - x1) + dense.sum((1, 2)) - inside)))


@pytest.fixture(autouse=True)
def fresh_clip_cache():
    clear_clip_cache()
    yield
    clear_clip_cache()


@needs_goldens
@pytest.mark.parametrize("checkpoint", sorted(GOLDENS))
def test_docs_predict_snippet_matches_the_goldens(checkpoint, tiny_clip, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FASTSAM_CLIP", str(tiny_clip))
    # The prompted calls use the default imgsz: small here for speed (the goldens' call sets 1024 itself).
    monkeypatch.setitem(DEFAULTS, "imgsz", 320)
    # Ultralytics' "Predict Usage" snippet, verbatim but for the paths (and no ultralytics import).
    # Define an inference source
    source = str(DOGS)

    # Create a FastSAM model
    model = FastSAM(str(FIXTURES / checkpoint))  # or FastSAM-x.pt

    # Run inference on an image
    everything_results = model(source, device="cpu", retina_masks=True, imgsz=1024, conf=0.4, iou=0.9)

    # Run inference with bboxes prompt
    results = model(source, bboxes=[439, 437, 524, 709])

    # Run inference with points prompt
    results = model(source, points=[[200, 200]], labels=[1])

    # Run inference with texts prompt
    results = model(source, texts="a photo of a dog")

    # Run inference with bboxes and points and texts prompt at the same time
    results = model(source, bboxes=[439, 437, 524, 709], points=[[200, 200]], labels=[1], texts="a photo of a dog")

    golden = golden_record(checkpoint, "dogs.jpg")
    everything = everything_results[0]
    assert len(everything) == len(golden["everything"]["masks"])
    assert matched_mask_ious([r.to_coco() for r in everything.masks.rles], golden["everything"]["masks"]).mean() >= 0.99
    np.testing.assert_allclose(np.sort(everything.boxes.conf.numpy()), np.sort(golden["everything"]["scores"]),
                               atol=1e-3)
    assert everything.orig_img.shape == (603, 1072, 3) and np.array_equal(everything.orig_img, cv2.imread(source))

    # The combined prompt is the union of the three kinds, each on the default-settings result.
    base = model(source)[0]
    dense = base.masks.data.numpy().astype(bool)
    expected = _point_rule(dense, [[200, 200]], [1])
    expected[_box_rule(dense, [439, 437, 524, 709])] = True
    expected[base.result.prompt(texts="a photo of a dog", text_crop="box").instance_ids] = True
    assert np.array_equal(results[0].indices, np.flatnonzero(expected))

    # Box and point prompts at the goldens' settings: the goldens' masks (all-foreground points: the original's
    # merged mask is the union of the instances Ultralytics selects).
    # (Prompted on the cached result, as FastSAMPredictor.prompt does: the same answers without the network.)
    for prompt in golden["box_prompts"]:
        answer = prompt_results(everything, bboxes=prompt["box"])
        assert len(answer) == 1 and mask_iou(_union(answer), decode(prompt["masks"][0])) >= 0.98
    for prompt in golden["point_prompts"]:
        if all(prompt["labels"]):
            answer = prompt_results(everything, points=prompt["points"], labels=prompt["labels"])
            assert mask_iou(_union(answer), decode(prompt["masks"][0])) >= 0.98


@needs_goldens
def test_docs_predictor_snippet(tiny_clip, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FASTSAM_CLIP", str(tiny_clip))
    # Ultralytics' "FastSAMPredictor example", verbatim but for the paths and imgsz (small, for speed).
    # Create FastSAMPredictor
    overrides = dict(conf=0.25, task="segment", mode="predict", model=N26, save=False, imgsz=320)
    predictor = FastSAMPredictor(overrides=overrides)

    # Segment everything
    everything_results = predictor(str(DOGS))

    # Prompt inference
    bbox_results = predictor.prompt(everything_results, bboxes=[[200, 200, 300, 300]])
    point_results = predictor.prompt(everything_results, points=[200, 200])
    text_results = predictor.prompt(everything_results, texts="a photo of a dog")

    everything = everything_results[0]
    dense = everything.masks.data.numpy().astype(bool)
    assert np.array_equal(bbox_results[0].indices, [_box_rule(dense, [200, 200, 300, 300])])
    assert np.array_equal(point_results[0].indices, np.flatnonzero(_point_rule(dense, [[200, 200]], [1])))
    assert np.array_equal(text_results[0].indices,
                          sorted(everything.result.prompt(texts="a photo of a dog", text_crop="box").instance_ids))


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> str:
    """dogs.jpg, or a synthetic picture of its size when ../shared is absent."""
    if HAVE_FIXTURES:
        return str(DOGS)
    y, x = np.mgrid[0:603, 0:1072]
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    cv2.imwrite(str(path), np.stack([x * 255 // 1072, y * 255 // 603, (x + y) % 256], -1).astype(np.uint8))
    return str(path)


@pytest.fixture(scope="module")
def n26(tiny_model):
    """The n26 parity checkpoint, or the random tiny model when ../shared is absent."""
    return FastSAM(N26 if HAVE_FIXTURES else str(tiny_model))


@pytest.fixture(scope="module")
def small(n26, image_path):
    """Every instance of the image at imgsz 320 and a low confidence (many overlapping masks)."""
    return n26(image_path, imgsz=320, conf=0.1, iou=0.9, retina_masks=True)[0]


def test_point_rule_with_background_points(small):
    dense = small.masks.data.numpy().astype(bool)
    points = [[289, 185], [300, 200], [43, 45], [871, 391]]
    for labels in ([1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 1]):
        answer = prompt_results(small, points=points, labels=labels)
        assert np.array_equal(answer.indices, np.flatnonzero(_point_rule(dense, points, labels))), labels
    several = prompt_results(small, bboxes=[[0, 103, 297, 603], [494, 70, 1002, 581], [0, 103, 297, 603]])
    picks = sorted({_box_rule(dense, b) for b in ([0, 103, 297, 603], [494, 70, 1002, 581])})
    assert np.array_equal(several.indices, picks)
    # A prompt on a prompted view answers among the view's instances only.
    subset = small[np.arange(len(small)) % 2 == 1]
    answer = prompt_results(subset, points=[[289, 185]])
    assert set(answer.indices) <= set(subset.indices)
    held = np.flatnonzero(dense[:, 185, 289])
    assert np.array_equal(answer.indices, held[held % 2 == 1])


def test_views_are_lazy(small):
    view = small[:5]
    assert len(view) == 5 and view.boxes.xyxy.shape == (5, 4) and view.boxes.cls.tolist() == [0.0] * 5
    segments = view.masks.xy
    assert "data" not in view.masks.__dict__, "masks.xy must not build the (N, H, W) masks"
    assert len(segments) == 5 and all(s.ndim == 2 and s.shape[1] == 2 for s in segments)
    h, w = view.orig_shape
    assert all((s[:, 0] < w).all() and (s[:, 1] < h).all() for s in segments)
    np.testing.assert_allclose(view.masks.xyn[0], segments[0] / [w, h])
    data = view.masks.data
    assert data.shape == (5, h, w) and data.dtype == torch.float32
    for k in range(5):
        x, y = segments[k][0].astype(int)
        assert data[k, y, x] == 1.0, "a contour point lies on its mask"
    picture = view.plot()
    assert picture.shape == (h, w, 3) and picture.dtype == np.uint8 and not np.array_equal(picture, view.orig_img)
    assert np.array_equal(view.masks[1:3].data, data[1:3]) and np.array_equal(view.boxes[2].xyxy, view.boxes.xyxy[2:3])
    empty = small[[]]
    assert len(empty) == 0 and empty.masks is None and empty.boxes.xyxy.shape == (0, 4)


def test_save_writes_the_plot(small, tmp_path):
    name = small[:3].save(str(tmp_path / "plot.png"))
    written = cv2.imread(name)
    assert np.array_equal(written, small[:3].plot())
    with pytest.raises(InvalidInputError, match="file name"):
        small.save(str(tmp_path / "plot.txt"))


def test_path_pil_and_bgr_array_give_the_same_masks(n26, image_path):
    bgr = cv2.imread(image_path)
    from_path, from_pil, from_bgr = n26([image_path, Image.open(image_path), bgr], imgsz=320, conf=0.2)
    for other in (from_pil, from_bgr):
        assert len(other) == len(from_path) > 0
        assert [r.to_coco() for r in other.masks.rles] == [r.to_coco() for r in from_path.masks.rles]
        assert np.array_equal(other.orig_img, bgr)
    if not HAVE_FIXTURES:
        return  # the random model's masks cover nearly everything whatever the colours
    # The channels really are read as BGR: the same array taken as RGB gives other masks.
    swapped = n26(np.ascontiguousarray(bgr[..., ::-1]), imgsz=320, conf=0.2)[0]
    assert [r.to_coco() for r in swapped.masks.rles] != [r.to_coco() for r in from_path.masks.rles]


def test_logits_are_kept_unless_asked_not_to(n26, image_path):
    kept = n26(image_path, imgsz=320)[0].to_sam_records(output_mode="coco_rle")
    lean = FastSAM(n26.ckpt_path, keep_logits=False)(image_path, imgsz=320)[0]
    assert lean.result.prototypes is None and len(kept) == len(lean) > 0
    assert all(r["stability_score"] is None for r in lean.to_sam_records(output_mode="coco_rle"))
    assert all(0.0 <= r["stability_score"] <= 1.0 for r in kept)


def test_stream_and_names(n26, image_path):
    stream = n26([image_path, image_path], stream=True, imgsz=320)
    first = next(stream)
    assert isinstance(first, Results) and first.names == {0: "object"} and first.path == image_path
    assert len(list(stream)) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"confidence": 0.3}, "unsupported argument"),
    ({"imgsz": "big"}, "imgsz"),
    ({"conf": 2.0}, "conf"),
    ({"labels": [1]}, "without points"),
    ({"bboxes": [[10, 10, 5, 50]]}, "inverted"),
    ({"points": [[5000, 5]]}, "outside"),
    ({"device": "nonsense"}, "device"),
])
def test_bad_arguments_raise_clear_errors(n26, image_path, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        n26(image_path, **{"imgsz": 64, **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where there is no CUDA")
def test_cuda_without_cuda_is_a_clear_error(n26, image_path):
    with pytest.raises(InvalidInputError, match="CUDA"):
        n26(image_path, device=0, imgsz=64)


def test_bad_sources_and_models(n26, tmp_path):
    with pytest.raises(InvalidInputError, match="source"):
        n26(42)
    with pytest.raises(InvalidInputError, match="source"):
        n26([])
    from fastsam.errors import FastSAMError

    with pytest.raises(FastSAMError):
        FastSAM(str(tmp_path / "missing.pt"))
