"""Image decoder fuzzing: a few thousand seeded mutations of small images in every common format (made from
the fixture images when ../shared is present). Every outcome must be an RGB array or ImageReadError, fast."""

from __future__ import annotations

import io
import random
import time

import numpy as np
import pytest
from PIL import Image

from fastsam.errors import ImageReadError
from fastsam.io.image import load_image
from tests.paths import FIXTURES
from tests.test_inputs import tiff_with_rational_strip_offsets

MUTATIONS = 3000
MAX_PIXELS = 4_000_000  # a mutated header may claim a large image; keep each decode small and fast
SECONDS_PER_IMAGE = 2.0
FORMATS = [("JPEG", {}), ("PNG", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}), ("BMP", {}),
           ("GIF", {}), ("WEBP", {}), ("PPM", {}), ("PNG", {"mode": "RGBA"}), ("PNG", {"mode": "I;16"})]


def _seed_pictures() -> list[Image.Image]:
    """Small RGB pictures: the fixture images scaled down, else a synthetic gradient with noise."""
    paths = sorted((FIXTURES / "images").glob("*.jpg"))[:3]
    if paths:
        return [Image.open(path).convert("RGB").resize((48, 36)) for path in paths]
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 48 * 36 * 3).reshape(36, 48, 3)
    return [Image.fromarray((gradient + rng.integers(0, 40, gradient.shape)).clip(0, 255).astype(np.uint8))]


def _encoded_seeds() -> list[bytes]:
    seeds = [tiff_with_rational_strip_offsets()]
    for picture in _seed_pictures():
        for fmt, options in FORMATS:
            options = dict(options)
            mode = options.pop("mode", None)
            image = picture.convert(mode) if mode and mode != "I;16" else picture
            if mode == "I;16":
                image = Image.fromarray(np.asarray(picture.convert("L"), np.uint16) * 257)
            buffer = io.BytesIO()
            image.save(buffer, format=fmt, **options)
            seeds.append(buffer.getvalue())
    return seeds


def _mutate(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    out = bytearray(data)
    if kind == 0:  # flip a few bytes, mostly in the header, where the decoder's decisions are
        for _ in range(rng.randint(1, 6)):
            where = rng.randrange(min(len(out), 256)) if rng.random() < 0.7 else rng.randrange(len(out))
            out[where] = rng.randrange(256)
    elif kind == 1:  # truncate
        del out[rng.randrange(1, len(out)):]
    elif kind == 2:  # copy a chunk elsewhere
        start = rng.randrange(len(out))
        chunk = out[start:start + rng.randint(1, 64)]
        at = rng.randrange(len(out))
        out[at:at] = chunk
    elif kind == 3:  # extreme values in a 16- or 32-bit header field
        where = rng.randrange(min(len(out), 128))
        out[where:where + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff",
                                           b"\x00\x00\x01\x00"])
    else:  # random bytes inserted
        at = rng.randrange(len(out))
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(out)


@pytest.mark.filterwarnings("ignore")  # Pillow warns about odd metadata; only the outcome matters here
def test_mutated_images_decode_or_raise_image_error():
    rng = random.Random(2121)
    seeds = _encoded_seeds()
    outcomes = {"decoded": 0, "ImageReadError": 0}
    slowest = 0.0
    for _ in range(MUTATIONS):
        data = _mutate(rng.choice(seeds), rng)
        start = time.perf_counter()
        try:
            array = load_image(data, max_pixels=MAX_PIXELS)
        except ImageReadError:
            outcomes["ImageReadError"] += 1
        except Exception as exc:  # noqa: BLE001 - the point of the test: nothing else may come out
            pytest.fail(f"{type(exc).__name__}: {exc} from mutated bytes {data[:64]!r}...")
        else:
            assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
            outcomes["decoded"] += 1
        slowest = max(slowest, time.perf_counter() - start)
    # The mutations are neither all harmless nor all fatal, so both paths were exercised.
    assert outcomes["decoded"] > MUTATIONS // 10 and outcomes["ImageReadError"] > MUTATIONS // 10, outcomes
    assert slowest < SECONDS_PER_IMAGE
