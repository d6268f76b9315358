"""The HTTP API of `fastsam serve`: every endpoint and error case, on a hand-made backend whose masks are known
rectangles (exact answers), plus one end-to-end run with a real (tiny, random) network."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import threading
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from pycocotools import mask as coco_mask  # noqa: E402

from fastsam.errors import InvalidInputError  # noqa: E402
from fastsam.io.image import load_image  # noqa: E402
from fastsam.result import SegmentationResult  # noqa: E402
from fastsam.rle import RunLengthMask  # noqa: E402
from fastsam.serve import ServeSettings, create_app  # noqa: E402
from fastsam.serve.cache import CachedImage, ResultCache  # noqa: E402

H, W = 64, 80
RED, GREEN, GRAY = (255, 0, 0), (0, 255, 0), (128, 128, 128)
# Instance 0: red rectangle; instance 1: green rectangle (x1, y1, x2, y2), exclusive max corner.
RECTS = [(10, 5, 30, 25), (40, 30, 70, 60)]
SCORES = [0.9, 0.8]


class RectangleBackend:
    """A stand-in for the predictor: bytes -> a result whose instances are ``RECTS`` (clipped to the image).

    ``delay`` seconds of sleep, or waiting for ``gate`` (a threading.Event), imitate a long all-instance pass;
    ``calls`` counts the passes.
    """

    def __init__(self, rects: Sequence[tuple[int, int, int, int]] = RECTS, delay: float = 0.0,
                 gate: threading.Event | None = None) -> None:
        self.rects, self.delay, self.gate, self.calls = list(rects), delay, gate, 0
        self.imgsz, self.conf, self.iou, self.max_det, self.retina, self.device = 64, 0.4, 0.9, 300, True, "cpu"

    def __call__(self, data: bytes) -> SegmentationResult:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay)
        rgb = load_image(data)
        h, w = rgb.shape[:2]
        rles = []
        for x1, y1, x2, y2 in self.rects:
            mask = np.zeros((h, w), bool)
            mask[y1:y2, x1:x2] = True
            rles.append(RunLengthMask.from_mask(mask))
        return SegmentationResult((h, w), np.array(self.rects, np.float32).reshape(-1, 4),
                                  np.array(SCORES[:len(self.rects)], np.float32), rles, image=rgb)


def rect_mask(rect: tuple[int, int, int, int], h: int = H, w: int = W) -> np.ndarray:
    x1, y1, x2, y2 = rect
    mask = np.zeros((h, w), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def scene_png(h: int = H, w: int = W, seed: int = 0, fmt: str = "PNG") -> bytes:
    """A gray image with the red and green rectangles of RECTS; ``seed`` changes one pixel (new bytes)."""
    rgb = np.full((h, w, 3), GRAY, np.uint8)
    for rect, colour in zip(RECTS, (RED, GREEN)):
        rgb[rect_mask(rect, h, w)] = colour
    rgb[-1, -1] = (seed % 256, seed // 256 % 256, 7)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt)
    return buffer.getvalue()


def decode_rle(rle: dict) -> np.ndarray:
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def decode_png(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


class ColourScorer:
    """Text scorer: a crop's score for 'red' / 'green' is the fraction of its pixels of that colour."""

    source = "colour-scorer"

    def score(self, images: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray:
        colours = {"red": RED, "green": GREEN}
        return np.array([[float((img == colours[t]).all(-1).mean()) if t in colours else 0.0 for t in texts]
                         for img in images])


BASE_URL = "http://localhost"  # a name the server answers to (the Host check refuses TestClient's "testserver")


def make_client(backend=None, text_model=None, **limits) -> TestClient:
    return TestClient(create_app(backend or RectangleBackend(), ServeSettings(**limits), text_model=text_model),
                      base_url=BASE_URL)


@pytest.fixture
def client() -> TestClient:
    with make_client(text_model=ColourScorer(), max_prompts=4) as c:
        yield c


@pytest.fixture
def image_id(client: TestClient) -> str:
    response = client.post("/v1/images", content=scene_png(), headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    return response.json()["image_id"]


def assert_error(response: httpx.Response, status: int, code: str, words: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert words.lower() in error["message"].lower()


# ------------------------------------------------------------------------------------------ service
def test_health_and_model_info(client: TestClient) -> None:
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["queue"]["in_flight"] == 0 and health["cache"]["images"] == 0
    info = client.get("/v1/model").json()
    assert info["text_prompts"] is True and info["text_model"] == "colour-scorer"
    assert info["limits"]["max_prompts"] == 4 and info["imgsz"] == 64
    assert make_client().get("/v1/model").json()["text_prompts"] is False


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/health", "/v1/model", "/v1/images", "/v1/images/{image_id}", "/v1/images/{image_id}/image",
            "/v1/images/{image_id}/everything", "/v1/images/{image_id}/prompt"} <= set(paths)
    upload_types = paths["/v1/images"]["post"]["requestBody"]["content"]
    assert {"image/*", "multipart/form-data"} <= set(upload_types)
    assert "delete" in paths["/v1/images/{image_id}"]


def test_page_and_static_files_are_served_without_cdn(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for name in ("app.js", "rle.js", "style.css"):
        body = client.get(f"/static/{name}")
        assert body.status_code == 200
        assert "http://" not in body.text and "https://" not in body.text  # works offline
    assert "https://" not in page.text and "http://" not in page.text


def test_unknown_route_is_a_json_error(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "http_error")


# ------------------------------------------------------------------------------------------- upload
def test_upload_runs_the_pass_once_per_distinct_bytes() -> None:
    backend = RectangleBackend()
    data = scene_png()
    with make_client(backend) as client:
        first = client.post("/v1/images", content=data, headers={"Content-Type": "image/png"}).json()
        again = client.post("/v1/images", files={"file": ("scene.png", data, "image/png")}).json()
        raw = client.post("/v1/images", content=data, headers={"Content-Type": "application/octet-stream"}).json()
        other = client.post("/v1/images", content=scene_png(seed=1), headers={"Content-Type": "image/png"}).json()
        assert client.get("/v1/health").json()["cache"]["images"] == 2
    assert first["image_id"] == hashlib.sha256(data).hexdigest()
    assert (first["width"], first["height"], first["instances"], first["reused"]) == (W, H, 2, False)
    assert again["image_id"] == raw["image_id"] == first["image_id"] and again["reused"] and raw["reused"]
    assert other["image_id"] != first["image_id"] and not other["reused"]
    assert backend.calls == 2


def test_image_info_and_decoded_image(client: TestClient, image_id: str) -> None:
    info = client.get(f"/v1/images/{image_id}").json()
    assert (info["image_id"], info["width"], info["height"], info["instances"]) == (image_id, W, H, 2)
    assert info["nbytes"] >= H * W * 3  # the cached result holds the image
    jpeg = client.get(f"/v1/images/{image_id}/image")
    assert jpeg.headers["content-type"] == "image/jpeg"
    pixels = cv2.imdecode(np.frombuffer(jpeg.content, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert pixels.shape == (H, W, 3)
    assert np.abs(pixels[15, 20].astype(int) - RED).max() < 40  # inside the red rectangle


@pytest.mark.parametrize("content, content_type, status, code, words", [
    (b"hello", "text/plain", 415, "unsupported_media_type", "not an image"),
    (scene_png(), "", 415, "unsupported_media_type", "(none)"),
    (b"", "image/png", 422, "image_read", "empty"),
    (b"\x89PNG\r\n\x1a\n this is not a png", "image/png", 422, "image_read", "not a readable image"),
    (scene_png()[: len(scene_png()) // 2], "image/png", 422, "image_read", "truncated"),
    (scene_png(fmt="TGA"), "image/x-tga", 422, "image_read", "not accepted"),
])
def test_bad_uploads_get_clear_json_errors(client: TestClient, content: bytes, content_type: str, status: int,
                                           code: str, words: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    assert_error(client.post("/v1/images", content=content, headers=headers), status, code, words)
    assert client.get("/v1/health").json()["cache"]["images"] == 0


def test_upload_limits_on_bytes_and_pixels() -> None:
    with make_client(max_upload_bytes=2000, max_pixels=100 * 100) as client:
        big = scene_png(120, 160)
        assert len(big) < 2000  # so that only the pixel limit applies
        assert_error(client.post("/v1/images", content=big, headers={"Content-Type": "image/png"}), 413,
                     "payload_too_large", "MP")
        noise = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(noise, "PNG")
        assert_error(client.post("/v1/images", content=noise.getvalue(), headers={"Content-Type": "image/png"}),
                     413, "payload_too_large", "2000 bytes")

        def chunks():  # no Content-Length: the limit applies while reading
            yield noise.getvalue()[:1500]
            yield noise.getvalue()[1500:]

        assert_error(client.post("/v1/images", content=chunks(), headers={"Content-Type": "image/png"}), 413,
                     "payload_too_large", "2000 bytes")
        assert client.post("/v1/images", content=scene_png(), headers={"Content-Type": "image/png"}).status_code == 200


def test_multipart_without_a_file_field(client: TestClient) -> None:
    assert_error(client.post("/v1/images", data={"name": "x"}, files={"other": ("a.png", scene_png(), "image/png")}),
                 415, "unsupported_media_type", "'file'")


# ------------------------------------------------------------------------------------------ prompts
def test_point_prompt_returns_the_instance_under_the_point(client: TestClient, image_id: str) -> None:
    answer = client.post(f"/v1/images/{image_id}/prompt", json={"points": [[15, 10]]}).json()
    assert answer["count"] == 1 and (answer["width"], answer["height"]) == (W, H)
    mask = answer["masks"][0]
    assert np.array_equal(decode_rle(mask["rle"]), rect_mask(RECTS[0]))
    assert mask["box"] == list(RECTS[0]) and mask["area"] == 20 * 20 and mask["score"] == pytest.approx(0.9)
    # A background point on the red rectangle leaves nothing of it.
    both = client.post(f"/v1/images/{image_id}/prompt", json={"points": [[15, 10], [50, 40]], "labels": [1, 1],
                                                              "format": "png"})
    union = decode_png(both.content) > 0
    assert np.array_equal(union, rect_mask(RECTS[0]) | rect_mask(RECTS[1]))
    per_point = client.post(f"/v1/images/{image_id}/prompt",
                            json={"points": [[15, 10], [50, 40]], "per_point": True}).json()
    assert [m["instance_id"] for m in per_point["masks"]] == [0, 1]


def test_box_prompt_and_png_headers(client: TestClient, image_id: str) -> None:
    response = client.post(f"/v1/images/{image_id}/prompt", json={"boxes": [[38, 28, 72, 62]], "format": "png"})
    assert response.headers["content-type"] == "image/png"
    assert np.array_equal(decode_png(response.content) == 255, rect_mask(RECTS[1]))
    assert response.headers["x-fastsam-box"] == ",".join(map(str, RECTS[1]))
    assert float(response.headers["x-fastsam-score"]) == pytest.approx(0.8)
    assert response.headers["x-fastsam-count"] == "1"


def test_polygon_and_coco_formats(client: TestClient, image_id: str) -> None:
    polygons = client.post(f"/v1/images/{image_id}/prompt", json={"boxes": [[9, 4, 31, 26]], "format": "polygons"})
    outline = np.array(polygons.json()["masks"][0]["polygons"][0]).reshape(-1, 2)
    x1, y1, x2, y2 = RECTS[0]
    assert outline.min(0).tolist() == [x1, y1] and outline.max(0).tolist() == [x2 - 1, y2 - 1]  # pixel centres
    coco = client.post(f"/v1/images/{image_id}/prompt?file_name=scene.png",
                       json={"points": [[15, 10]], "format": "coco"}).json()
    assert coco["images"][0] == {"id": 1, "file_name": "scene.png", "height": H, "width": W}
    assert np.array_equal(decode_rle(coco["annotations"][0]["segmentation"]), rect_mask(RECTS[0]))
    assert coco["annotations"][0]["bbox"] == [x1, y1, x2 - x1, y2 - y1]


def test_text_prompt_with_a_configured_scorer(client: TestClient, image_id: str) -> None:
    green = client.post(f"/v1/images/{image_id}/prompt", json={"texts": ["green"]}).json()
    assert [m["instance_id"] for m in green["masks"]] == [1] and "green" in green["masks"][0]["prompt"]
    both = client.post(f"/v1/images/{image_id}/prompt",
                       json={"texts": ["red"], "text_mode": "threshold", "text_threshold": 0.5}).json()
    assert [m["instance_id"] for m in both["masks"]] == [0]


def test_text_model_folder_enables_text_prompts(tmp_path) -> None:
    pytest.importorskip("transformers")
    from fastsam.prompts.text import build_random_clip

    folder = build_random_clip(tmp_path / "clip", projection_dim=16, vision=dict(
        image_size=32, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2))
    with make_client(text_model=str(folder)) as client:
        assert client.get("/v1/model").json()["text_model"] == folder.name  # not its path on this machine
        uploaded = client.post("/v1/images", content=scene_png(), headers={"Content-Type": "image/png"}).json()
        answer = client.post(f"/v1/images/{uploaded['image_id']}/prompt", json={"texts": ["a red box"]}).json()
    assert answer["count"] == 1 and answer["masks"][0]["instance_id"] in (0, 1)  # random CLIP: either one


def test_missing_text_model_fails_at_start_up(tmp_path) -> None:
    pytest.importorskip("transformers")
    from fastsam.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        create_app(RectangleBackend(), text_model=str(tmp_path / "no-such-clip"))


@pytest.mark.parametrize("body, status, code, words", [
    ({}, 400, "invalid_input", "give points"),
    ({"points": [[80, 10]]}, 400, "invalid_input", "outside"),
    ({"points": [[-1, 10]]}, 400, "invalid_input", "outside"),
    ({"points": [[10, 10]], "labels": [1, 0]}, 400, "invalid_input", "one label per point"),
    ({"points": [[10, 10]], "labels": [2]}, 400, "invalid_input", "labels must be"),
    ({"labels": [1]}, 400, "invalid_input", "without points"),
    ({"boxes": [[30, 30, 10, 10]]}, 400, "invalid_input", "inverted"),
    ({"boxes": [[100, 100, 120, 120]]}, 400, "invalid_input", "outside"),
    ({"points": [[1, 1]] * 5}, 400, "invalid_input", "at most 4"),
    ({"text_mode": "topk"}, 400, "invalid_input", "without texts"),
    ({"texts": ["  "]}, 400, "invalid_input", "empty"),
    ({"texts": ["red"], "text_mode": "topk"}, 400, "invalid_input", "top_k"),
    ({"points": [[1, 2, 3]]}, 422, "invalid_request", "points"),
    ({"points": "here"}, 422, "invalid_request", "points"),
    ({"points": [[1, 1]], "format": "jpeg"}, 422, "invalid_request", "format"),
    ({"points": [[1, 1]], "colour": "red"}, 422, "invalid_request", "colour"),
])
def test_bad_prompts_get_clear_json_errors(client: TestClient, image_id: str, body: dict, status: int, code: str,
                                           words: str) -> None:
    assert_error(client.post(f"/v1/images/{image_id}/prompt", json=body), status, code, words)


def test_non_json_and_nan_prompt_bodies(client: TestClient, image_id: str) -> None:
    json_type = {"Content-Type": "application/json"}
    assert_error(client.post(f"/v1/images/{image_id}/prompt", content=b"points", headers=json_type),
                 422, "invalid_request")
    assert_error(client.post(f"/v1/images/{image_id}/prompt", content=b'{"points": [[NaN, 1]]}',
                             headers={"Content-Type": "application/json"}), 400, "invalid_input", "NaN")


def test_text_prompt_without_a_text_model_is_unavailable(image_id: str) -> None:
    with make_client() as client:
        uploaded = client.post("/v1/images", content=scene_png(), headers={"Content-Type": "image/png"}).json()
        assert_error(client.post(f"/v1/images/{uploaded['image_id']}/prompt", json={"texts": ["red"]}), 501,
                     "feature_unavailable", "--text-model")


def test_unknown_and_malformed_ids(client: TestClient) -> None:
    unknown = "0" * 64
    for response in (client.get(f"/v1/images/{unknown}"), client.delete(f"/v1/images/{unknown}"),
                     client.get(f"/v1/images/{unknown}/everything"), client.get(f"/v1/images/{unknown}/image"),
                     client.post(f"/v1/images/{unknown}/prompt", json={"points": [[1, 1]]})):
        assert_error(response, 404, "unknown_image", "no image with id")
    assert_error(client.get("/v1/images/not-a-hash/everything"), 422, "invalid_request", "image_id")


# --------------------------------------------------------------------------------- everything, delete
def test_everything_in_every_format(client: TestClient, image_id: str) -> None:
    answer = client.get(f"/v1/images/{image_id}/everything").json()
    assert answer["count"] == 2 and [m["prompt"] for m in answer["masks"]] == ["everything"] * 2
    for mask, rect in zip(answer["masks"], RECTS):
        assert np.array_equal(decode_rle(mask["rle"]), rect_mask(rect)) and mask["box"] == list(rect)
    labels = decode_png(client.get(f"/v1/images/{image_id}/everything?format=labels").content)
    expected = rect_mask(RECTS[0]).astype(np.uint8) + 2 * rect_mask(RECTS[1])
    assert labels.dtype == np.uint8 and np.array_equal(labels, expected)
    coco = client.get(f"/v1/images/{image_id}/everything?format=coco").json()
    assert len(coco["annotations"]) == 2 and coco["categories"] == [{"id": 1, "name": "object"}]
    assert_error(client.get(f"/v1/images/{image_id}/everything?format=svg"), 422, "invalid_request", "format")


def test_delete_forgets_the_image(client: TestClient, image_id: str) -> None:
    assert client.delete(f"/v1/images/{image_id}").status_code == 204
    assert_error(client.post(f"/v1/images/{image_id}/prompt", json={"points": [[1, 1]]}), 404, "unknown_image")
    assert_error(client.delete(f"/v1/images/{image_id}"), 404, "unknown_image")
    assert client.get("/v1/health").json()["cache"] == {"images": 0, "bytes": 0, "budget_bytes": 1024 ** 3,
                                                        "evictions": 0}


# -------------------------------------------------------------------------------------------- cache
def _entry(name: str, nbytes: int) -> CachedImage:
    return CachedImage(name, SegmentationResult((1, 1), np.zeros((0, 4)), np.zeros(0), []), nbytes, 0.0)


def test_cache_evicts_least_recently_used_within_budget() -> None:
    cache = ResultCache(100)
    cache.put(_entry("a", 40))
    cache.put(_entry("b", 40))
    cache.get("a")  # a is now the most recently used
    cache.put(_entry("c", 40))
    assert "a" in cache and "c" in cache and "b" not in cache and cache.nbytes == 80 and cache.evictions == 1
    cache.put(_entry("huge", 500))  # alone above budget: kept, everything else evicted
    assert len(cache) == 1 and "huge" in cache


def test_server_evicts_old_images_when_over_budget() -> None:
    with make_client(cache_bytes=H * W * 3 + 5000) as client:  # room for one cached scene, not two
        ids = [client.post("/v1/images", content=scene_png(seed=k), headers={"Content-Type": "image/png"}).json()
               ["image_id"] for k in range(2)]
        assert_error(client.get(f"/v1/images/{ids[0]}"), 404, "unknown_image")
        assert client.get(f"/v1/images/{ids[1]}").status_code == 200
        assert client.get("/v1/health").json()["cache"]["evictions"] == 1


# ---------------------------------------------------------------------------------------- concurrency
def _run(coroutine):
    return asyncio.run(coroutine)


def _async_client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        await asyncio.sleep(0.01)


def test_health_and_cached_prompts_answer_during_a_long_pass() -> None:
    backend = RectangleBackend()
    app = create_app(backend, ServeSettings())
    worker = app.state.worker

    async def scenario() -> tuple[list[float], list[bool], dict, dict]:
        async with _async_client(app) as client:
            png = {"Content-Type": "image/png"}
            cached = (await client.post("/v1/images", content=scene_png(), headers=png)).json()
            # A first prompt compiles the prompt kernels (a one-off cost, not a wait for the pass).
            await client.post(f"/v1/images/{cached['image_id']}/prompt", json={"points": [[15, 10]]})
            backend.delay = 2.0  # the next pass is long
            upload = asyncio.create_task(
                client.post("/v1/images", content=scene_png(seed=9), headers={"Content-Type": "image/png"}))
            await _until(lambda: worker.stats()["running"] == 1)
            latencies, pass_running, during = [], [], {}
            for _ in range(5):
                start = time.perf_counter()
                during = (await client.get("/v1/health")).json()
                answer = await client.post(f"/v1/images/{cached['image_id']}/prompt", json={"points": [[15, 10]]})
                assert answer.status_code == 200
                latencies.append(time.perf_counter() - start)
                pass_running.append(not upload.done())
            slow = await upload
            return latencies, pass_running, during, slow.json()

    latencies, pass_running, during, slow = _run(scenario())
    assert during["queue"]["in_flight"] == 1 and during["queue"]["running"] == 1
    assert slow["seconds"] >= 2.0 and not slow["reused"]
    # Every health check and prompt was answered while the 2 s pass was still running, none waiting for it.
    assert all(pass_running) and max(latencies) < 1.0


def test_full_queue_answers_503_then_recovers() -> None:
    gate = threading.Event()
    backend = RectangleBackend(gate=gate)
    app = create_app(backend, ServeSettings(workers=1, queue_size=1))
    worker = app.state.worker

    async def scenario() -> tuple[list[int], httpx.Response, list[dict], dict]:
        async with _async_client(app) as client:
            post = lambda seed: client.post("/v1/images", content=scene_png(seed=seed),  # noqa: E731
                                            headers={"Content-Type": "image/png"})
            running = asyncio.create_task(post(1))
            await _until(lambda: worker.stats()["in_flight"] == 1)
            waiting = asyncio.create_task(post(2))
            await _until(lambda: worker.stats()["in_flight"] == 2)
            same = asyncio.create_task(post(2))  # the same bytes join the queued pass, taking no slot
            await asyncio.sleep(0.05)
            refused = await post(3)
            health = (await client.get("/v1/health")).json()
            gate.set()
            done = [await task for task in (running, waiting, same)]
            after = (await client.get("/v1/health")).json()
            return [r.status_code for r in done], refused, [r.json() for r in done], {"during": health, "after": after}

    statuses, refused, answers, health = _run(scenario())
    assert statuses == [200, 200, 200]
    assert_error(refused, 503, "server_busy", "retry")
    assert refused.headers["retry-after"]
    assert health["during"]["queue"]["running"] == 1 and health["during"]["queue"]["waiting"] == 1
    assert health["after"]["queue"]["in_flight"] == 0 and backend.calls == 2
    assert answers[1]["image_id"] == answers[2]["image_id"] and answers[2]["reused"]


def test_a_failing_pass_is_a_clear_error_and_frees_its_slot() -> None:
    def broken(data: bytes) -> SegmentationResult:
        raise InvalidInputError("this backend refuses every image")

    with make_client(broken, workers=1, queue_size=0) as client:
        for _ in range(2):
            assert_error(client.post("/v1/images", content=scene_png(), headers={"Content-Type": "image/png"}), 400,
                         "invalid_input", "refuses")
        assert client.get("/v1/health").json()["queue"]["in_flight"] == 0


# ------------------------------------------------------------------------------------- real network
def test_end_to_end_with_a_real_network_matches_the_predictor(tiny_model) -> None:
    from fastsam.inference.predictor import Predictor
    from fastsam.model.zoo import load_model

    predictor = Predictor(load_model(tiny_model), imgsz=128, conf=0.0, max_det=10)
    data = scene_png(96, 128)
    expected = predictor(data)
    point = np.argwhere(expected.mask(0))[0][::-1].tolist()  # (x, y) inside instance 0
    with make_client(predictor) as client:
        uploaded = client.post("/v1/images", content=data, headers={"Content-Type": "image/png"}).json()
        assert uploaded["instances"] == len(expected) > 0
        everything = client.get(f"/v1/images/{uploaded['image_id']}/everything").json()
        answer = client.post(f"/v1/images/{uploaded['image_id']}/prompt", json={"points": [point]}).json()
        info = client.get("/v1/model").json()
    for k, mask in enumerate(everything["masks"]):
        assert np.array_equal(decode_rle(mask["rle"]), expected.mask(k))
    direct = expected.prompt(points=[point]).masks[0].decode()
    assert np.array_equal(decode_rle(answer["masks"][0]["rle"]), direct)
    assert info["architecture"]["widths"][0] == 16 and info["imgsz"] == 128 and info["conf"] == 0.0


def test_settings_are_validated() -> None:
    with pytest.raises(InvalidInputError, match="workers"):
        ServeSettings(workers=0)
    with pytest.raises(InvalidInputError, match="queue_size"):
        ServeSettings(queue_size=-1)
    with pytest.raises(InvalidInputError, match="backend"):
        create_app(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ cli
def test_cli_serves_on_localhost_by_default(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from fastsam.cli import main

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.update(app=app, **kwargs))
    assert main(["serve", "--model", str(tiny_model), "--imgsz", "128", "--port", "8765", "--cache-mb", "64"]) == 0
    assert started["host"] == "127.0.0.1" and started["port"] == 8765
    with TestClient(started["app"], base_url=BASE_URL) as client:
        info = client.get("/v1/model").json()
    assert info["imgsz"] == 128 and info["limits"]["cache_bytes"] == 64 * 1024 * 1024
    assert info["name"] == tiny_model.name  # the file's name, not its path on this machine


@pytest.mark.parametrize("argv, words", [
    (["--port", "0"], "--port"), (["--port", "70000"], "--port"), (["--cache-mb", "0"], "--cache-mb"),
    (["--workers", "0"], "workers"), (["--imgsz", "100"], "multiple of 32"),
])
def test_cli_rejects_bad_options(tiny_model, argv: list[str], words: str, capsys: pytest.CaptureFixture) -> None:
    from fastsam.cli import main

    assert main(["serve", "--model", str(tiny_model), *argv]) == 2
    assert words in capsys.readouterr().err


# --------------------------------------------------------------------------------- request rules (issue 21)
def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR declaring ``width`` x ``height`` (no pixel data): enough for the header check."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\0\0\0\0IEND\xaeB`\x82"


def corrupt_tiff() -> bytes:
    """The issue's 332-byte TIFF: StripOffsets stored as a RATIONAL, which Pillow's decoder chokes on (TypeError)."""
    import struct

    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        offset = ifd + 2 + 12 * k
        if struct.unpack_from("<H", data, offset)[0] == 273:  # StripOffsets
            struct.pack_into("<HHII", data, offset, 273, 5, 1, 8)
    return bytes(data)


def test_options_head_and_405_name_every_method(client: TestClient, image_id: str) -> None:
    options = client.options(f"/v1/images/{image_id}")
    assert options.status_code == 204
    assert set(options.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE", "OPTIONS"}
    assert set(client.options("/v1/images").headers["allow"].split(", ")) == {"POST", "OPTIONS"}
    for path in ("/v1/health", "/v1/model", f"/v1/images/{image_id}/image", "/", "/static/app.js"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"]
    refused = client.put(f"/v1/images/{image_id}")
    assert_error(refused, 405, "method_not_allowed", "DELETE")
    assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE", "OPTIONS"}
    assert_error(client.options("/v1/nothing"), 404, "http_error")


def test_security_headers_on_every_response(client: TestClient, image_id: str) -> None:
    responses = [client.get("/"), client.get("/static/app.js"), client.get("/v1/health"),
                 client.get(f"/v1/images/{image_id}/everything?format=png"), client.get("/v1/nothing"),
                 client.post("/v1/images", content=b"x", headers={"Content-Type": "text/plain"}),
                 client.get("/v1/health", headers={"Host": "elsewhere.example"})]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        policy = dict(p.strip().split(" ", 1) for p in response.headers["content-security-policy"].split(";"))
        assert policy["frame-ancestors"] == "'none'" and policy["script-src"] == "'self'"
        assert policy["default-src"] == "'none'" and response.headers["x-frame-options"] == "DENY"
    page = responses[0].text
    # The page satisfies the policy: its scripts and styles are files of its own, none inline.
    assert "<script>" not in page and "style=" not in page and "<style" not in page
    assert not re.search(r"\son[a-z]+\s*=", page, re.IGNORECASE)  # no inline event handlers


def test_docs_are_off_and_openapi_states_what_a_prompt_needs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/images/{image_id}/prompt"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert body["required"] and {"points", "boxes", "texts", "format"} <= set(schema["properties"])
    assert schema["anyOf"] == [{"required": ["points"]}, {"required": ["boxes"]}, {"required": ["texts"]}]
    assert "at least one" in schema["description"]


def test_empty_texts_are_no_text_prompt_without_a_text_model() -> None:
    with make_client() as client:
        image_id = client.post("/v1/images", content=scene_png(), headers={"Content-Type": "image/png"}).json()[
            "image_id"]
        answer = client.post(f"/v1/images/{image_id}/prompt", json={"points": [[15, 10]], "texts": []})
        assert answer.status_code == 200 and answer.json()["count"] == 1
        assert np.array_equal(decode_rle(answer.json()["masks"][0]["rle"]), rect_mask(RECTS[0]))
        assert_error(client.post(f"/v1/images/{image_id}/prompt", json={"texts": []}), 400, "invalid_input",
                     "give points")
        assert_error(client.post(f"/v1/images/{image_id}/prompt", json={"texts": ["red"]}), 501,
                     "feature_unavailable")


@pytest.mark.parametrize("width, height", [(8000, 6000), (20000, 20000), (100000, 100000)])
def test_too_many_pixels_is_always_413(client: TestClient, width: int, height: int) -> None:
    """48 MP is above the server's limit; 400 MP and 10 GP are above Pillow's decompression-bomb limit too."""
    response = client.post("/v1/images", content=png_header(width, height), headers={"Content-Type": "image/png"})
    assert_error(response, 413, "payload_too_large", "MP")
    assert "bomb" not in response.text.lower() and "dos" not in response.text.lower()


def test_prompt_body_is_limited_typed_and_parsed_safely() -> None:
    with make_client(max_prompt_bytes=1000) as client:
        image_id = client.post("/v1/images", content=scene_png(), headers={"Content-Type": "image/png"}).json()[
            "image_id"]
        url = f"/v1/images/{image_id}/prompt"
        big = json.dumps({"points": [[1, 1]] * 200}).encode()
        assert_error(client.post(url, content=big, headers={"Content-Type": "application/json"}), 413,
                     "payload_too_large", "1000 bytes")

        def chunks():  # no Content-Length: refused while it streams
            yield big[:600]
            yield big[600:]

        assert_error(client.post(url, content=chunks(), headers={"Content-Type": "application/json"}), 413,
                     "payload_too_large", "prompt body")
        assert_error(client.post(url, content=b'{"points": [[15, 10]]}', headers={"Content-Type": "text/plain"}),
                     415, "unsupported_media_type", "JSON")
        with make_client(max_prompt_bytes=100_000) as roomy:
            roomy_id = roomy.post("/v1/images", content=scene_png(), headers={"Content-Type": "image/png"}).json()[
                "image_id"]
            # Deeper than the JSON parser recurses: a clear 422, not a RecursionError.
            deep = roomy.post(f"/v1/images/{roomy_id}/prompt", content=b"[" * 50_000 + b"]" * 50_000,
                              headers={"Content-Type": "application/json"})
        assert_error(deep, 422, "invalid_request", "not valid JSON")
        ok = client.post(url, content=b'{"points": [[15, 10]]}', headers={"Content-Type": "application/json"})
        assert ok.status_code == 200 and client.get("/v1/model").json()["limits"]["max_prompt_bytes"] == 1000


def test_errors_name_no_memory_addresses_or_local_paths(client: TestClient) -> None:
    from fastsam.serve.errors import public_message

    response = client.post("/v1/images", content=b"GIF89a" + b"\0" * 40, headers={"Content-Type": "image/gif"})
    assert response.status_code == 422 and "0x" not in response.text and "object at" not in response.text
    garbage = client.post("/v1/images", content=b"\xff" * 64, headers={"Content-Type": "image/png"})
    assert_error(garbage, 422, "image_read", "not a readable image")
    assert "0x" not in garbage.text and "BytesIO" not in garbage.text
    here = str(Path.cwd() / "models" / "m.pt")
    scrubbed = public_message(f"cannot identify image file <_io.BytesIO object at 0x7f3a2b1c0d90> near {here}, "
                              f"id 0xdeadbeef12")
    assert "0x7f" not in scrubbed and "deadbeef" not in scrubbed and str(Path.cwd()) not in scrubbed
    assert scrubbed.endswith("m.pt, id 0x…") and "the data" in scrubbed


def test_thin_images_and_a_corrupt_tiff_are_not_server_errors(tiny_model) -> None:
    from fastsam.inference.predictor import Predictor
    from fastsam.model.zoo import load_model

    predictor = Predictor(load_model(tiny_model), imgsz=64, conf=0.0, max_det=5)
    thin = [np.full(shape, 90, np.uint8) for shape in ((2, 5000, 3), (5000, 2, 3))]
    with TestClient(create_app(predictor), base_url=BASE_URL, raise_server_exceptions=False) as client:
        for rgb in thin:
            buffer = io.BytesIO()
            Image.fromarray(rgb).save(buffer, "PNG")
            response = client.post("/v1/images", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
            # Segmented (at least one pixel per side) or refused with a clear 4xx: either is a fix.
            assert response.status_code == 200 or (400 <= response.status_code < 500 and
                                                   response.json()["error"]["message"]), response.text
        tiff = client.post("/v1/images", content=corrupt_tiff(), headers={"Content-Type": "image/tiff"})
    assert len(corrupt_tiff()) == 332
    assert_error(tiff, 422, "image_read")


def test_cli_beyond_localhost_needs_a_token_or_an_explicit_opt_out(
        tiny_model, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import argparse
    import socket

    import uvicorn

    from fastsam.cli import main
    from fastsam.serve.cli import register, serve_settings
    from fastsam.serve.protocol import HeadTimeoutH11Protocol

    started: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.update(app=app, **kwargs))
    monkeypatch.delenv("FASTSAM_TOKEN", raising=False)
    base = ["serve", "--model", str(tiny_model), "--imgsz", "64"]
    assert main([*base, "--host", "0.0.0.0"]) == 2 and "--token" in capsys.readouterr().err and not started
    assert main([*base, "--host", "192.168.1.5"]) == 2  # a specific address beyond loopback needs one too

    assert main([*base, "--host", "0.0.0.0", "--token", "cli-token-1234", "--header-timeout", "3"]) == 0
    settings = started["app"].state.settings
    assert settings.token == "cli-token-1234" and socket.gethostname().lower() in settings.allowed_hosts
    assert "localhost" in settings.allowed_hosts and settings.header_timeout == 3
    assert issubclass(started["http"], HeadTimeoutH11Protocol) and started["http"].header_timeout == 3
    assert "#token=" in capsys.readouterr().err

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())

    def settings_for(*argv: str) -> ServeSettings:
        return serve_settings(parser.parse_args(["serve", *argv]))

    monkeypatch.setenv("FASTSAM_TOKEN", "env-token-5678")
    settings = settings_for("--host", "10.0.0.7", "--allowed-hosts", "seg.lan, 10.0.0.7")
    assert settings.token == "env-token-5678" and settings.allowed_hosts == ("seg.lan", "10.0.0.7")
    assert settings_for("--host", "10.0.0.7").allowed_hosts == ("localhost", "127.0.0.1", "::1", "10.0.0.7")
    monkeypatch.delenv("FASTSAM_TOKEN")
    assert settings_for("--host", "0.0.0.0", "--no-token").token is None
    local = settings_for()  # localhost: a token is optional
    assert local.token is None and local.allowed_hosts == ("localhost", "127.0.0.1", "::1")
    assert settings_for("--allowed-origins", "http://a.example:1,https://B.example").allowed_origins == (
        "http://a.example:1", "https://b.example")


def test_new_settings_are_validated() -> None:
    for kwargs, words in [({"max_prompt_bytes": 0}, "max_prompt_bytes"), ({"header_timeout": 0}, "header_timeout"),
                          ({"body_timeout": float("inf")}, "body_timeout"), ({"allowed_hosts": ()}, "allowed_hosts"),
                          ({"allowed_hosts": "localhost"}, "allowed_hosts"), ({"token": "short"}, "token"),
                          ({"token": "has a space in it"}, "token")]:
        with pytest.raises(InvalidInputError, match=words):
            ServeSettings(**kwargs)
    assert ServeSettings(allowed_hosts=("LocalHost:8000", "[::1]")).allowed_hosts == ("localhost", "::1")


def test_a_bug_in_a_pass_is_a_json_500_that_tells_nothing() -> None:
    def buggy(data: bytes) -> SegmentationResult:
        raise RuntimeError(f"internal state at {hex(id(data))} in /opt/secret/place")

    with TestClient(create_app(buggy), base_url=BASE_URL, raise_server_exceptions=False) as client:
        response = client.post("/v1/images", content=scene_png(), headers={"Content-Type": "image/png"})
        assert client.get("/v1/health").json()["queue"]["in_flight"] == 0
    assert_error(response, 500, "internal", "server log")
    assert "secret" not in response.text and "0x" not in response.text
