"""Text prompts: CLIP scoring of instance crops (with a tiny random CLIP saved locally, no download) and the
selection rules (with a deterministic colour scorer)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from fastsam.errors import FastSAMError, InvalidInputError, ModelNotFoundError
from fastsam.prompts import text as text_module
from fastsam.prompts.text import (
    CLIPScorer, MissingDependencyError, TextScores, build_random_clip, check_texts, clear_clip_cache,
    instance_crops, load_clip_scorer, pick_instances, text_prompt, widen,
)
from fastsam.result import SegmentationResult
from fastsam.rle import RunLengthMask

H, W = 200, 300
GRAY = 128
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


def _rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def _disc(cx: int, cy: int, radius: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2


def _result(image: np.ndarray | None, masks: list[np.ndarray]) -> SegmentationResult:
    n = len(masks)
    return SegmentationResult((H, W), np.zeros((n, 4), np.float32), np.linspace(0.9, 0.5, n).astype(np.float32)
                              if n else np.zeros(0, np.float32), [RunLengthMask.from_mask(m) for m in masks],
                              image=image)


@pytest.fixture
def scene() -> SegmentationResult:
    """Eight instances on a gray image:

    0 red rectangle (600 px)    1 tiny green square (9 px, skipped)    2 green rectangle (300 px)
    3 blue rectangle (400 px)   4 red square of exactly 100 px (skipped)   5 red disc (~450 px)
    6 'table' (3600 px) holding all of 3    7 larger region (5950 px) holding only 75% of 3
    """
    image = np.full((H, W, 3), GRAY, np.uint8)
    masks = [_rect(10, 10, 40, 30), _rect(100, 100, 103, 103), _rect(60, 10, 80, 25), _rect(150, 100, 170, 120),
             _rect(250, 10, 260, 20), _disc(60, 150, 12), _rect(140, 90, 200, 150), _rect(155, 90, 240, 160)]
    for k in (0, 4, 5):
        image[masks[k]] = COLOURS["red"]
    for k in (1, 2):
        image[masks[k]] = COLOURS["green"]
    image[masks[3]] = COLOURS["blue"]
    return _result(image, masks)


class ColourScorer:
    """Deterministic stand-in: the score of a crop for a colour name is the fraction of its non-white pixels
    (white being the paint outside the mask) of that colour, in [0, 1] like a cosine. Records every call."""

    def __init__(self):
        self.calls: list[tuple[int, list[str]]] = []

    def score(self, images, texts):
        self.calls.append((len(images), list(texts)))
        out = np.zeros((len(images), len(texts)), np.float32)
        for i, image in enumerate(images):
            for t, name in enumerate(texts):
                shown = ~np.all(image == 255, axis=-1)
                out[i, t] = np.all(image == COLOURS[name], axis=-1)[shown].mean() if shown.any() else 0.0
        return out


@pytest.fixture
def colours() -> ColourScorer:
    return ColourScorer()


# ------------------------------------------------------------------------------------------ tiny CLIP
TINY_VISION = dict(image_size=32, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2)
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=77)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A randomly initialised, tiny CLIP model + processor written by transformers into a temporary folder."""
    pytest.importorskip("transformers")
    return build_random_clip(tmp_path_factory.mktemp("tiny_clip"), vision=TINY_VISION, text=TINY_TEXT,
                             projection_dim=16, seed=0)


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_clip_cache()
    yield
    clear_clip_cache()


def _reference_cosine(folder, crops, texts) -> np.ndarray:
    """Cosine similarities computed here, straight from transformers, one crop and one text at a time."""
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    out = np.zeros((len(crops), len(texts)), np.float32)
    with torch.no_grad():
        for t, text in enumerate(texts):
            tokens = processor(text=[text], return_tensors="pt")
            emb_t = model.text_projection(model.text_model(**tokens).pooler_output)[0]
            for i, crop in enumerate(crops):
                pixels = processor(images=[Image.fromarray(crop)], return_tensors="pt")["pixel_values"]
                emb_i = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)[0]
                out[i, t] = torch.nn.functional.cosine_similarity(emb_i, emb_t, dim=0).item()
    return out


def test_full_path_text_to_mask(scene, tiny_clip):
    texts = ["a red rectangle", "the yellow dog"]
    answer = text_prompt(scene, texts, model=tiny_clip)
    scores = answer.scores
    np.testing.assert_array_equal(scores.instance_ids, [0, 2, 3, 5, 6, 7])
    assert scores.cosine.shape == scores.probability.shape == (6, 2)
    # The cosines are those of the white-background crops through CLIP; the probabilities the original's softmax.
    ids, crops = instance_crops(scene.image, scene.rles, scene.areas, scene.mask_bounds)
    np.testing.assert_allclose(scores.cosine, _reference_cosine(tiny_clip, crops, texts), atol=1e-5)
    import torch
    expected = torch.softmax(100 * torch.from_numpy(scores.cosine).double(), dim=0).numpy()
    np.testing.assert_allclose(scores.probability, expected, atol=1e-6)
    np.testing.assert_allclose(scores.probability.sum(0), 1, atol=1e-5)
    # One mask per text (best mode): the argmax, with its probability and instance id.
    selection = answer.selection
    assert len(selection) == 2
    for t, text in enumerate(texts):
        row = int(np.argmax(scores.cosine[:, t]))
        best = int(scores.instance_ids[row])
        assert selection.instance_ids[t] == best
        assert selection.prompts[t] == f"text {t}: {text!r}"
        assert selection.scores[t] == pytest.approx(float(scores.probability[row, t]))
        np.testing.assert_array_equal(selection.masks[t].decode(), scene.mask(best))
    # The same through SegmentationResult.prompt.
    via_result = scene.prompt(texts=texts, text_model=tiny_clip)
    assert via_result.instance_ids == selection.instance_ids and via_result.scores == selection.scores
    json.dumps(scores.to_dict())


def test_model_loaded_once_across_calls(scene, tiny_clip, monkeypatch):
    import transformers

    loads = {"model": 0, "processor": 0}
    model_load = transformers.CLIPModel.from_pretrained.__func__
    processor_load = transformers.CLIPProcessor.from_pretrained.__func__

    def count_model(cls, *args, **kwargs):
        loads["model"] += 1
        return model_load(cls, *args, **kwargs)

    def count_processor(cls, *args, **kwargs):
        loads["processor"] += 1
        return processor_load(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.CLIPModel, "from_pretrained", classmethod(count_model))
    monkeypatch.setattr(transformers.CLIPProcessor, "from_pretrained", classmethod(count_processor))
    first = scene.prompt(texts="a cat", text_model=tiny_clip)
    scene.prompt(texts=["a dog", "a cat"], text_model=str(tiny_clip), text_mode="topk", text_top_k=2)
    text_prompt(scene, "a bird", model=tiny_clip, device="cpu")
    assert loads == {"model": 1, "processor": 1}
    assert load_clip_scorer(tiny_clip) is load_clip_scorer(str(tiny_clip), device="cpu")
    assert scene.prompt(texts="a cat", text_model=tiny_clip).scores == first.scores
    clear_clip_cache()
    load_clip_scorer(tiny_clip)
    assert loads == {"model": 2, "processor": 2}


def test_model_from_environment(scene, tiny_clip, monkeypatch):
    monkeypatch.setenv("FASTSAM_CLIP", str(tiny_clip))
    selection = scene.prompt(texts="anything")
    assert len(selection) == 1
    assert load_clip_scorer().source == str(tiny_clip.resolve())


def test_batching_matches_one_by_one(scene, tiny_clip):
    texts = ["red", "a blue thing", "a very long description " * 20]  # the last one is truncated to 77 tokens
    _, crops = instance_crops(scene.image, scene.rles, scene.areas, scene.mask_bounds, crop="box")
    crops = crops + [np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
                     for h, w in [(1, 200), (300, 7), (64, 64), (5, 5)]]
    batched = load_clip_scorer(tiny_clip, batch_size=4)
    together = batched.score(crops, texts)
    single = CLIPScorer(batched.model, batched.processor, batch_size=1)
    one_by_one = np.array([[single.score([crop], [text])[0, 0] for text in texts] for crop in crops])
    assert together.shape == (len(crops), len(texts))
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched.embed_images(crops[:3]), axis=1), 1, atol=1e-5)


def test_prompt_scores_all_crops_in_one_call(scene, colours):
    scene.prompt(texts=["red", "green", "blue"], text_model=colours)
    assert colours.calls == [(6, ["red", "green", "blue"])]


# ------------------------------------------------------------------------------------ selection rules
def test_best_per_text_and_index_mapping(scene, colours):
    answer = text_prompt(scene, ["blue", "red", "green"], model=colours)
    np.testing.assert_array_equal(answer.scores.instance_ids, [0, 2, 3, 5, 6, 7])  # 1 (9 px) and 4 (100 px) skipped
    selection = answer.selection
    assert selection.instance_ids == [3, 0, 2]
    assert selection.prompts == ["text 0: 'blue'", "text 1: 'red'", "text 2: 'green'"]
    # softmax probabilities: clear winners for blue and green; red ties between the rectangle and the disc
    assert selection.scores == [pytest.approx(1, abs=1e-3), pytest.approx(0.5, abs=1e-3), pytest.approx(1, abs=1e-3)]
    full = answer.scores.full("cosine")
    assert full.shape == (8, 3) and np.isnan(full[[1, 4]]).all()
    assert full[3, 0] == 1.0 and full[0, 1] == 1.0 and full[5, 1] == pytest.approx(1.0)  # disc: white corners
    # crop="box" keeps the disc's gray corners, so the disc scores lower for red.
    boxed = text_prompt(scene, "red", model=colours, crop="box").scores.full("cosine")
    assert boxed[5, 0] < 0.85 and boxed[0, 0] == 1.0


def test_top_k(scene, colours):
    selection = scene.prompt(texts="red", text_model=colours, text_mode="topk", text_top_k=2, text_crop="box")
    assert selection.instance_ids == [0, 5]
    assert selection.scores[0] > selection.scores[1]
    everything = scene.prompt(texts="red", text_model=colours, text_top_k=50)  # the mode follows from top_k
    assert len(everything) == 6 and everything.instance_ids[:2] in ([0, 5], [5, 0])


def test_threshold_on_cosine(scene, colours):
    selection = scene.prompt(texts=["red", "yellow", "blue"], text_model=colours, text_threshold=0.1, text_crop="box")
    # Every instance at least 10% of the colour; yellow matches nothing and adds nothing.
    assert selection.instance_ids == [0, 5, 3, 6]
    assert [p.split(":")[0] for p in selection.prompts] == ["text 0", "text 0", "text 2", "text 2"]
    assert selection.scores[0] == 1.0 and selection.scores[3] == pytest.approx(400 / 3600)  # cosine scores
    capped = scene.prompt(texts="blue", text_model=colours, text_threshold=0.1, text_top_k=1)
    assert capped.instance_ids == [3]
    none = scene.prompt(texts="blue", text_model=colours, text_mode="threshold", text_threshold=1.5)
    assert len(none) == 0


def test_threshold_on_probability(scene, colours):
    answer = text_prompt(scene, "green", model=colours, mode="threshold", threshold=0.5, metric="probability")
    assert answer.selection.instance_ids == [2]
    assert answer.selection.scores[0] == pytest.approx(float(answer.scores.probability[1, 0]))
    with pytest.raises(InvalidInputError, match="give a threshold"):
        text_prompt(scene, "green", model=colours, mode="threshold", metric="probability")


def test_default_threshold(scene, colours):
    selection = text_prompt(scene, "red", model=colours, mode="threshold").selection
    assert selection.instance_ids == [0, 5]  # cosine >= 0.25


def test_wider(scene, colours):
    # The blue rectangle (3) lies wholly inside the table (6); region 7 is larger but holds only 75% of it.
    plain = scene.prompt(texts="blue", text_model=colours)
    assert plain.instance_ids == [3]
    wide = scene.prompt(texts="blue", text_model=colours, text_wider=True)
    assert wide.instance_ids == [6] and wide.scores == plain.scores
    np.testing.assert_array_equal(wide.masks[0].decode(), scene.mask(6))
    # Picks that widen to the same instance appear once (with the best pick's score).
    both = scene.prompt(texts="blue", text_model=colours, text_threshold=0.1, text_wider=True)
    assert both.instance_ids == [6] and both.scores == [1.0]
    # Nothing larger holds the red rectangle: it stays.
    assert scene.prompt(texts="red", text_model=colours, text_wider=True).instance_ids == [0]


def test_widen_needs_more_than_ninety_percent():
    target = _rect(10, 10, 20, 20)  # 100 px
    ninety = _rect(0, 0, 19, 50)  # 950 px holding exactly 90 px of the target: not enough
    ninety_one = _rect(0, 0, 19, 50)
    ninety_one[10, 19] = True  # 951 px holding 91
    rles = [RunLengthMask.from_mask(m) for m in (target, ninety, ninety_one)]
    areas = np.array([r.area for r in rles])
    bounds = np.array([r.bbox() for r in rles])
    assert widen(0, rles[:2], areas[:2], bounds[:2]) == 0
    assert widen(0, rles, areas, bounds) == 2
    # Among several holders, the largest wins.
    huge = _rect(0, 0, 100, 100)
    rles.append(RunLengthMask.from_mask(huge))
    areas = np.array([r.area for r in rles])
    bounds = np.array([r.bbox() for r in rles])
    assert widen(0, rles, areas, bounds) == 3


def test_pick_instances_ties_and_modes():
    scores = TextScores.from_cosine(["a", "b"], np.array([2, 5, 9]), np.array([[0.3, 0.1], [0.3, 0.2], [0.1, 0.2]]))
    assert pick_instances(scores) == [[(2, pytest.approx(0.5, abs=1e-4))], [(5, pytest.approx(0.5, abs=1e-4))]]
    assert [i for i, _ in pick_instances(scores, "topk", top_k=3)[1]] == [5, 9, 2]
    assert [i for i, _ in pick_instances(scores, threshold=0.2)[0]] == [2, 5]
    assert pick_instances(scores, "best", metric="cosine")[0] == [(2, pytest.approx(0.3))]


def test_combined_with_boxes_and_points(scene, colours):
    selection = scene.prompt(points=[[15, 15]], boxes=[[150, 100, 170, 120]], texts=["green", "red"],
                             text_model=colours)
    assert selection.prompts == ["box 0", "points", "text 0: 'green'", "text 1: 'red'"]
    assert selection.instance_ids == [3, None, 2, 0]


def test_crops_paint_outside_white_and_decode_only_the_box(scene):
    ids, crops = instance_crops(scene.image, scene.rles, scene.areas, scene.mask_bounds, crop="mask")
    ids_box, boxes = instance_crops(scene.image, scene.rles, scene.areas, scene.mask_bounds, crop="box")
    np.testing.assert_array_equal(ids, ids_box)
    for n, crop, box in zip(ids, crops, boxes):
        x1, y1, x2, y2 = scene.mask_bounds[n]
        inside = scene.mask(n)[y1:y2, x1:x2]
        assert crop.shape == box.shape == (y2 - y1, x2 - x1, 3)
        np.testing.assert_array_equal(box, scene.image[y1:y2, x1:x2])
        np.testing.assert_array_equal(crop[inside], box[inside])
        assert (crop[~inside] == 255).all()
    # the 'table' crop (instance 6) also shows the blue rectangle (instance 3) it holds
    assert (boxes[list(ids).index(6)] == COLOURS["blue"]).all(-1).sum() == 400


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("texts, message", [
    ("", "text 0 is empty"), ("   ", "text 0 is empty"), ([], "texts is empty"), (["dog", ""], "text 1 is empty"),
    ([3], "text 0 must be a string"), (b"dog", "must be a string or a list"), (42, "must be a string or a list"),
])
def test_bad_texts(scene, colours, texts, message):
    with pytest.raises(InvalidInputError, match=message):
        scene.prompt(texts=texts, text_model=colours)
    assert colours.calls == []


def test_texts_are_stripped():
    assert check_texts(["  a dog ", "cat"]) == ["a dog", "cat"]
    assert check_texts("a dog") == ["a dog"]


class Exploding:
    def score(self, images, texts):
        raise AssertionError("the scorer must not be called")


def test_no_instances_gives_an_empty_selection(tmp_path):
    empty = _result(np.zeros((H, W, 3), np.uint8), [])
    assert len(empty.prompt(texts="a dog", text_model=Exploding())) == 0
    # No model is needed (or loaded) when there is nothing to score.
    answer = text_prompt(empty, "a dog", model=tmp_path / "missing")
    assert len(answer.selection) == 0 and answer.scores.cosine.shape == (0, 1)


def test_only_tiny_instances_gives_an_empty_selection(colours):
    tiny = _result(np.zeros((H, W, 3), np.uint8), [_rect(0, 0, 10, 10), _rect(50, 50, 53, 53)])
    assert len(tiny.prompt(texts="red", text_model=colours)) == 0
    assert colours.calls == []


def test_missing_model_folder(scene, tmp_path):
    with pytest.raises(ModelNotFoundError, match="no CLIP model folder") as info:
        scene.prompt(texts="a dog", text_model=tmp_path / "nope")
    assert "save_pretrained" in str(info.value) and "FASTSAM_CLIP" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="no CLIP model folder"):
        scene.prompt(texts="a dog", text_model=str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        scene.prompt(texts="a dog", text_model=tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        scene.prompt(texts="a dog", text_model=tmp_path / "weights.bin")


def test_broken_model_folder(scene, tmp_path):
    pytest.importorskip("transformers")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="cannot load the CLIP model in"):
        scene.prompt(texts="a dog", text_model=tmp_path)


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "FASTSAM_OFFLINE"])
def test_offline_without_local_copy(scene, tmp_path, monkeypatch, variable):
    pytest.importorskip("transformers")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "FASTSAM_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "1")
    monkeypatch.setattr(text_module, "_hub_reachable", lambda: pytest.fail("must not touch the network"))
    with pytest.raises(ModelNotFoundError, match="offline mode is set") as info:
        scene.prompt(texts="a dog", text_model="fastsam-tests/no-such-clip")
    message = str(info.value)
    assert "save_pretrained" in message and "--text-model" in message and "fastsam-tests/no-such-clip" in message


def test_hub_unreachable_without_local_copy(scene, monkeypatch):
    pytest.importorskip("transformers")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "FASTSAM_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(text_module, "_hub_reachable", lambda: False)
    with pytest.raises(ModelNotFoundError, match="cannot be reached") as info:
        load_clip_scorer("fastsam-tests/no-such-clip")
    assert "save_pretrained" in str(info.value)


def test_missing_transformers(scene, tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "fastsam-torch\[text\]"'):
        scene.prompt(texts="a dog", text_model=tmp_path)


def test_result_without_image(scene, colours):
    scene.image = None
    with pytest.raises(InvalidInputError, match="keep_image"):
        scene.prompt(texts="red", text_model=colours)


def test_image_given_separately(scene, colours):
    image = scene.image
    scene.image = None
    assert text_prompt(scene, "blue", model=colours, image=image).selection.instance_ids == [3]
    with pytest.raises(InvalidInputError, match="must be"):
        text_prompt(scene, "blue", model=colours, image=image[:10])


@pytest.mark.parametrize("options, message", [
    ({"text_mode": "all"}, "text mode must be one of"), ({"text_mode": "topk"}, "needs top_k"),
    ({"text_top_k": 0}, "top_k must be a positive integer"), ({"text_top_k": 1.5}, "top_k must be"),
    ({"text_threshold": "high"}, "threshold must be a number"), ({"text_threshold": float("nan")}, "finite"),
    ({"text_metric": "dot"}, "text metric must be one of"), ({"text_crop": "circle"}, "crop must be one of"),
    ({"text_model": 3}, "score\\(images, texts\\)"),
])
def test_bad_options(scene, options, message):
    with pytest.raises(InvalidInputError, match=message):
        scene.prompt(texts="red", **({"text_model": ColourScorer()} | options))


def test_bad_device_for_clip(scene, tiny_clip):
    with pytest.raises(InvalidInputError, match="unknown torch device"):
        scene.prompt(texts="red", text_model=tiny_clip, text_device="nonsense")


class WrongShape:
    def score(self, images, texts):
        return np.zeros((len(images) + 1, len(texts)))


class NotFinite:
    def score(self, images, texts):
        return np.full((len(images), len(texts)), np.nan)


@pytest.mark.parametrize("scorer, message", [(WrongShape(), "expected"), (NotFinite(), "NaN")])
def test_broken_scorer(scene, scorer, message):
    with pytest.raises(FastSAMError, match=message):
        scene.prompt(texts="red", text_model=scorer)


def test_labels_without_points_still_rejected(scene, colours):
    with pytest.raises(InvalidInputError, match="labels were given without points"):
        scene.prompt(labels=[1], texts="red", text_model=colours)


def test_text_cache_is_bounded(tiny_clip):
    scorer = load_clip_scorer(tiny_clip)
    texts = [f"thing {k}" for k in range(300)]
    embedded = scorer.embed_texts(texts)
    assert embedded.shape == (300, 16) and len(scorer._texts) == 256  # noqa: SLF001
    np.testing.assert_allclose(scorer.embed_texts(texts[:2]), embedded[:2], atol=1e-6)  # re-embedded, same
