"""The original FastSAM repository's Python API (fastsam.compat.original): its README snippet run verbatim against
the goldens in ../shared/fixtures, its selection rules against fastsam's own prompts, and the places where we
raise or keep order instead of the original's behaviour."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from fastsam.compat.results import Results
from fastsam.errors import InvalidInputError
from fastsam.rle import RunLengthMask
from tests.paths import FIXTURES
from fastsam.eval.matching import matched_mask_ious
from tests.test_parity import GOLDENS, decode, golden_record, mask_iou
from tests.test_text import tiny_clip  # noqa: F401  (a module fixture: a random CLIP written locally)

pytestmark = pytest.mark.skipif(not (FIXTURES / "golden_s.json").is_file(), reason="../shared/fixtures not present")

DOGS = FIXTURES / "images" / "dogs.jpg"


def _coco(masks) -> list[dict]:
    return [RunLengthMask.from_mask(np.asarray(m) != 0).to_coco() for m in masks]


@pytest.mark.parametrize("checkpoint", sorted(GOLDENS))
def test_readme_snippet_matches_the_goldens(checkpoint, tmp_path, monkeypatch, tiny_clip):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTSAM_CLIP", str(tiny_clip))  # the text prompt's CLIP: a random local one
    # The original README's snippet, verbatim but for the paths.
    from fastsam import FastSAM, FastSAMPrompt

    model = FastSAM(str(FIXTURES / checkpoint))
    IMAGE_PATH = str(DOGS)
    DEVICE = 'cpu'
    everything_results = model(IMAGE_PATH, device=DEVICE, retina_masks=True, imgsz=1024, conf=0.4, iou=0.9,)
    prompt_process = FastSAMPrompt(IMAGE_PATH, everything_results, device=DEVICE)

    # everything prompt
    ann = prompt_process.everything_prompt()

    prompt_process.plot(annotations=ann,output_path='./output/dog.jpg',)

    golden = golden_record(checkpoint, "dogs.jpg")
    assert isinstance(ann, torch.Tensor) and ann.dtype == torch.float32 and ann.shape[1:] == (603, 1072)
    assert set(torch.unique(ann).tolist()) <= {0.0, 1.0}
    assert len(ann) == len(golden["everything"]["masks"])
    assert matched_mask_ious(_coco(ann), golden["everything"]["masks"]).mean() >= 0.99
    written = cv2.imread("output/dog.jpg")
    assert written is not None and written.shape == (603, 1072, 3)

    # The same instances as fastsam's own API gives, pixel for pixel.
    ours = everything_results[0].result
    assert np.array_equal(ann.numpy().astype(bool), ours.masks)

    # The README's prompt snippet, verbatim.
    # bbox default shape [0,0,0,0] -> [x1,y1,x2,y2]
    ann = prompt_process.box_prompt(bboxes=[[200, 200, 300, 300]])
    assert np.array_equal(ann[0] != 0, ours.prompt(boxes=[[200, 200, 300, 300]]).masks[0].decode())

    # text prompt
    ann = prompt_process.text_prompt(text='a photo of a dog')
    assert ann.dtype == bool and ann.shape == (1, 603, 1072)
    assert np.array_equal(ann[0], ours.prompt(texts=['a photo of a dog']).masks[0].decode())

    # point prompt
    # points default [[0,0]] [[x1,y1],[x2,y2]]
    # point_label default [0] [1,0] 0:background, 1:foreground
    ann = prompt_process.point_prompt(points=[[620, 360]], pointlabel=[1])
    assert np.array_equal(ann[0], ours.prompt(points=[[620, 360]], labels=[1]).masks[0].decode())

    prompt_process.plot(annotations=ann,output_path='./output/dog.jpg',)

    for prompt in golden["box_prompts"]:
        ann = prompt_process.box_prompt(bboxes=[list(prompt["box"])])
        assert isinstance(ann, np.ndarray) and ann.dtype == np.float32 and ann.shape == (1, 603, 1072)
        assert mask_iou(ann[0] != 0, decode(prompt["masks"][0])) >= 0.98
        assert np.array_equal(ann[0] != 0, ours.prompt(boxes=[prompt["box"]]).masks[0].decode())
    for prompt in golden["point_prompts"]:
        ann = prompt_process.point_prompt(points=prompt["points"], pointlabel=prompt["labels"])
        assert isinstance(ann, np.ndarray) and ann.dtype == bool and ann.shape == (1, 603, 1072)
        assert mask_iou(ann[0], decode(prompt["masks"][0])) >= 0.98
    prompt_process.plot(annotations=ann,output_path='./output/dog.jpg',)
    assert os.path.getsize("output/dog.jpg") > 0


@pytest.fixture(scope="module")
def n26_dogs():
    """FastSAM (compat) on dogs.jpg with the n26 checkpoint at a small size (fast), and its prompt object."""
    from fastsam import FastSAM, FastSAMPrompt

    results = FastSAM(str(FIXTURES / "fastsam-n26-parity.pt"))(str(DOGS), device="cpu", retina_masks=True,
                                                               imgsz=320, conf=0.4, iou=0.9)
    return results, FastSAMPrompt(str(DOGS), results, device="cpu")


def test_box_prompt_keeps_order_and_answers_each_instance_once(n26_dogs):
    results, prompt = n26_dogs
    ours = results[0].result
    boxes = [[494, 70, 1002, 581], [0, 103, 297, 603], [494, 70, 1002, 581]]
    ids = ours.prompt(boxes=boxes).instance_ids
    assert ids[0] != ids[1], "the fixture's two boxes pick different instances"
    ann = prompt.box_prompt(bboxes=boxes)
    # The original answers list(set(ids)): arbitrary order. Here: first-box order, each instance once.
    assert ann.shape[0] == 2
    assert np.array_equal(ann[0] != 0, ours.rles[ids[0]].decode())
    assert np.array_equal(ann[1] != 0, ours.rles[ids[1]].decode())
    single = prompt.box_prompt(bbox=[0, 103, 297, 603])
    assert np.array_equal(single, ann[1:])


def test_point_prompt_is_fastsams_merged_rule(n26_dogs):
    results, prompt = n26_dogs
    points, labels = [[289, 185], [43, 45], [871, 391]], [1, 0, 1]
    ann = prompt.point_prompt(points=points, pointlabel=labels)
    assert np.array_equal(ann[0], results[0].result.prompt(points=points, labels=labels).masks[0].decode())


@pytest.mark.parametrize("call, message", [
    (lambda p: p.box_prompt(), "bbox"),
    (lambda p: p.box_prompt(bboxes=[[2000, 2000, 2100, 2100]]), "outside"),
    (lambda p: p.box_prompt(bboxes=[[10, 10, 5, 50]]), "inverted"),
    (lambda p: p.point_prompt(points=[[5000, 5]], pointlabel=[1]), "outside"),
    (lambda p: p.point_prompt(points=[[5, 5]], pointlabel=[1, 0]), "label"),
    (lambda p: p.text_prompt(["a dog"]), "string"),
])
def test_bad_prompts_raise_clear_errors(n26_dogs, call, message):
    _, prompt = n26_dogs
    with pytest.raises(InvalidInputError, match=message):
        call(prompt)


def test_prompt_needs_matching_image_and_results(n26_dogs):
    from fastsam import FastSAMPrompt

    results, _ = n26_dogs
    with pytest.raises(InvalidInputError, match="image is"):
        FastSAMPrompt(np.zeros((10, 10, 3), np.uint8), results, device="cpu")
    with pytest.raises(InvalidInputError, match="list returned"):
        FastSAMPrompt(str(DOGS), "not results", device="cpu")
    assert FastSAMPrompt(str(DOGS), [], device="cpu").everything_prompt() == []


def test_plot_to_result_is_bgr_with_the_originals_colour(n26_dogs):
    results, prompt = n26_dogs
    masks = prompt.everything_prompt()
    picture = prompt.plot_to_result(masks, mask_random_color=False, better_quality=False, withContours=False)
    bgr = cv2.imread(str(DOGS))
    assert picture.shape == bgr.shape and picture.dtype == np.uint8
    covered = masks.numpy().any(0)
    assert np.array_equal(picture[~covered], bgr[~covered])
    y, x = np.argwhere(covered)[len(np.argwhere(covered)) // 2]
    expected = 0.4 * bgr[y, x] + 0.6 * np.array([255, 144, 30])  # the original's RGB (30, 144, 255) as BGR
    assert np.abs(picture[y, x].astype(float) - expected).max() <= 1.5


def test_no_instance_gives_empty_answers():
    from fastsam import FastSAM, FastSAMPrompt

    results = FastSAM(str(FIXTURES / "fastsam-n26-parity.pt"))(str(DOGS), imgsz=64, conf=1.0)
    assert isinstance(results, list) and len(results) == 1 and isinstance(results[0], Results)
    assert len(results[0]) == 0 and results[0].masks is None  # the original returns [] here
    prompt = FastSAMPrompt(str(DOGS), results, device="cpu")
    assert prompt.everything_prompt().shape == (0, 603, 1072)
    assert prompt.box_prompt(bbox=[0, 0, 100, 100]).shape == (0, 603, 1072)
    assert prompt.point_prompt(points=[[10, 10]], pointlabel=[1]).shape == (1, 603, 1072)
