"""One pixel limit, one message: ``max_pixels`` is honoured above Pillow's own bomb guard, and named when refused."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from corpus import _png_bomb
from PIL import Image
from web_process import running_web_server

from detector.preprocessing import DEFAULT_MAX_PIXELS, ImageDecodeError, PreprocessConfig, load_image, preprocess

#: 15000 x 10000: over twice Pillow's guard at the 64 MP default (where Pillow itself refuses from Image.open)
HUGE = (15_000, 10_000)


def _refusal(data: bytes, **limit: int) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as caught:
        load_image(data, draft_size=224, **limit)
    return caught.value


def test_the_default_refusal_names_the_default_limit() -> None:
    refused = _refusal(_png_bomb(*HUGE))
    assert refused.reason == "too_large"
    assert f"{DEFAULT_MAX_PIXELS:,}" in str(refused) and "128,000,000" not in str(refused)


def test_a_raised_limit_is_honoured_above_pillows_guard() -> None:
    # the header declares 150 MP, under a 200 MP limit: no longer refused as too large (its few bytes of
    # data are then found truncated)
    assert _refusal(_png_bomb(*HUGE), max_pixels=200_000_000).reason == "truncated"
    over = _refusal(_png_bomb(20_000, 15_000), max_pixels=200_000_000)
    assert over.reason == "too_large" and "200,000,000" in str(over)
    # a smaller limit asked for afterwards is still the one applied and named
    small = _refusal(_png_bomb(*HUGE), max_pixels=1_000_000)
    assert small.reason == "too_large" and "1,000,000" in str(small)


def _huge_jpeg() -> bytes:
    """A real 150 MP greyscale JPEG (a small file: one flat tone), decoded by draft mode at 1/8 scale."""
    buffer = io.BytesIO()
    Image.new("L", HUGE, 128).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def test_a_150_megapixel_photo_is_answered_under_a_200_megapixel_limit(exported_model: Path, tmp_path: Path) -> None:
    data = _huge_jpeg()
    assert preprocess(data, PreprocessConfig(), max_pixels=200_000_000).shape == (3, 224, 224)
    with running_web_server(
        exported_model,
        tmp_path / "server.log",
        DETECTOR_SERVE_MAX_PIXELS="200000000",
        DETECTOR_SERVE_MAX_FILE_BYTES="50000000",
    ) as url:
        response = httpx.post(f"{url}/predict", files=[("files", ("huge.jpg", data, "image/jpeg"))], timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["label"] in ("ai", "real")
