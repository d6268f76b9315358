"""The web page in a real browser: Playwright drives Debian's Chromium (never a downloaded browser) against
`fastsam serve` on a loopback port. Skips when Chromium or Playwright is missing."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from fastsam.serve import ServeSettings, create_app  # noqa: E402
from tests.test_serve import RECTS, RectangleBackend, rect_mask, scene_png  # noqa: E402
from tests.test_serve_http import serving  # noqa: E402

CHROMIUM = os.environ.get("FASTSAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
H, W = 128, 160

pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)),
                                reason=f"Chromium not found at {CHROMIUM} (apt-get install chromium)")


@contextmanager
def browser_page() -> Iterator["sync_api.Page"]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1000, "height": 800})
        finally:
            browser.close()


def overlay_alpha(page) -> np.ndarray:
    """(H, W) alpha of the page's mask overlay canvas."""
    width, height, alpha = page.evaluate("""() => {
        const c = document.getElementById('overlay');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const a = new Array(c.width * c.height);
        for (let i = 0; i < a.length; i++) a[i] = d[4 * i + 3];
        return [c.width, c.height, a];
    }""")
    return np.array(alpha, np.uint8).reshape(height, width)


def screen_point(page, x: float, y: float) -> tuple[float, float]:
    """Screen position of image pixel (x, y)'s centre on the (CSS-scaled) canvas."""
    box = page.locator("#marks").bounding_box()
    width, height = page.evaluate("() => [window.fastsamState.width, window.fastsamState.height]")
    return box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height


def wait_for(page, condition: str, timeout_ms: int = 20000) -> None:
    page.wait_for_function(f"() => {{ const s = window.fastsamState; return {condition}; }}", timeout=timeout_ms)


def open_image(page, url: str, image: Path) -> None:
    page.goto(url)
    page.set_input_files("#file", str(image))
    wait_for(page, "s.imageId !== null && s.shown === 'everything'", timeout_ms=120000)


def test_page_uploads_shows_everything_and_draws_prompted_masks(tmp_path: Path) -> None:
    image = tmp_path / "scene.png"
    image.write_bytes(scene_png(H, W))
    red, green = rect_mask(RECTS[0], H, W), rect_mask(RECTS[1], H, W)
    with serving(create_app(RectangleBackend(), ServeSettings())) as url, browser_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # A Content-Security-Policy violation is not a page error: Chromium reports it on the console.
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        open_image(page, url, image)
        assert np.array_equal(overlay_alpha(page) > 0, red | green)  # everything mode: both instances

        page.mouse.click(*screen_point(page, 55, 45))  # a foreground point on the green rectangle
        wait_for(page, "s.shown === 'prompt' && s.maskCount === 1")
        after_click = overlay_alpha(page)
        assert np.array_equal(after_click > 0, green)  # the red one's overlay pixels were cleared
        latency_ms = page.evaluate("() => window.fastsamState.lastLatencyMs")
        assert 0 < latency_ms < 2000
        page.screenshot(path=str(tmp_path / "serve_page.png"))
        assert (tmp_path / "serve_page.png").stat().st_size > 1000

        with page.expect_download() as download:  # the selected mask as PNG
            page.click("#download-mask")
        assert download.value.suggested_filename == "scene_mask.png"

        page.mouse.click(*screen_point(page, 15, 10), button="right")  # a background point: 2 prompts now
        wait_for(page, "s.prompts.length === 2 && document.body.dataset.state === 'ready'")
        page.click("#undo")
        wait_for(page, "s.prompts.length === 1 && s.shown === 'prompt' && document.body.dataset.state === 'ready'")
        assert np.array_equal(overlay_alpha(page) > 0, green)

        page.click("#clear")
        wait_for(page, "s.prompts.length === 0 && s.shown === 'everything'")
        start, end = screen_point(page, 8, 3), screen_point(page, 32, 27)  # drag a box around the red rectangle
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=5)
        page.mouse.up()
        wait_for(page, "s.shown === 'prompt' && s.prompts.length === 1 && s.prompts[0].kind === 'box'")
        assert np.array_equal(overlay_alpha(page) > 0, red)

        with page.expect_download() as download:  # all masks as COCO JSON
            page.click("#download-coco")
        coco = json.loads(Path(download.value.path()).read_text())
        assert coco["images"][0]["file_name"] == "scene.png" and len(coco["annotations"]) == 2
        page.screenshot(path=str(tmp_path / "serve_page_box.png"))
        assert not errors, errors


def test_page_shows_api_errors_in_the_status_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with serving(create_app(RectangleBackend(), ServeSettings())) as url, browser_page() as page:
        page.goto(url)
        page.set_input_files("#file", str(bad))
        page.wait_for_function("() => document.body.dataset.state === 'error'", timeout=20000)
        assert "not a readable image" in page.inner_text("#status")


def test_page_sends_the_token_from_its_address_under_the_security_policy(tmp_path: Path) -> None:
    image = tmp_path / "scene.png"
    image.write_bytes(scene_png(H, W))
    token = "browser-token-42"
    with serving(create_app(RectangleBackend(), ServeSettings(token=token))) as url, browser_page() as page:
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
        page.goto(url)  # without the token: the API refuses, the page says how to give it
        page.set_input_files("#file", str(image))
        page.wait_for_function("() => document.body.dataset.state === 'error'", timeout=20000)
        assert "#token=" in page.inner_text("#status")
        page.goto("about:blank")  # so that the next address is a new document, not a fragment change
        response = page.goto(f"{url}/#token={token}")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert page.evaluate("() => window.location.hash") == ""  # taken out of the address bar
        page.set_input_files("#file", str(image))
        wait_for(page, "s.imageId !== null && s.shown === 'everything'", timeout_ms=60000)
        page.mouse.click(*screen_point(page, 55, 45))
        wait_for(page, "s.shown === 'prompt' && s.maskCount === 1")
        assert np.array_equal(overlay_alpha(page) > 0, rect_mask(RECTS[1], H, W))
    # The refused requests (401) are the only console errors: nothing was blocked by the policy.
    assert not [m for m in console if "401" not in m], console


@pytest.mark.skipif(not os.environ.get("FASTSAM_SLOW_TESTS"),
                    reason="slow: a real FastSAM-s pass; set FASTSAM_SLOW_TESTS=1")
def test_click_to_mask_latency_with_fastsam_s(tmp_path: Path, shared_fixture) -> None:
    """The issue's bar: after the first pass, a click shows its mask within 100 ms (FastSAM-s, dogs.jpg)."""
    from fastsam.inference.predictor import Predictor
    from fastsam.model.zoo import load_model

    predictor = Predictor(load_model(shared_fixture("fastsam-s-parity.pt"), progress=False))
    image = shared_fixture("images/dogs.jpg")
    with serving(create_app(predictor, ServeSettings())) as url, browser_page() as page:
        open_image(page, url, image)
        latencies = []
        # The first click is a warm-up (kernel compilation); then clicks spread over the image.
        clicks = ((289, 185), (289, 185), (600, 300), (100, 500), (800, 200), (400, 400), (950, 80), (500, 550),
                  (200, 150), (700, 450))
        for x, y in clicks:
            if page.evaluate("() => window.fastsamState.prompts.length"):
                page.click("#clear")
            wait_for(page, "s.prompts.length === 0 && document.body.dataset.state === 'ready'")
            requests = page.evaluate("() => window.fastsamState.requests")
            page.mouse.click(*screen_point(page, x, y))
            wait_for(page, f"s.requests === {requests + 1} && document.body.dataset.state === 'ready'")
            latencies.append(page.evaluate("() => window.fastsamState.lastLatencyMs"))
        latencies = latencies[1:]
        page.screenshot(path=str(tmp_path / "serve_dogs.png"))
    print(f"click-to-mask latency (ms): {[round(v, 1) for v in latencies]}")
    assert np.median(latencies) < 100
