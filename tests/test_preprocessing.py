"""The one preprocessing implementation: same input, same tensor, whoever calls it; clear errors otherwise."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from helpers import make_image
from PIL import Image

from detector.preprocessing import (
    HALF_SCALE_MAX_PIXELS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDecodeError,
    PreprocessConfig,
    decode_image,
    image_to_array,
    load_image,
    preprocess,
    preprocess_decoded,
)
from provenance.config import ProvenanceSettings
from training.data import ImageDataset, Sample

CONFIG = PreprocessConfig()


def _png_bytes(image: Image.Image, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save_args)
    return buffer.getvalue()


def test_output_is_normalised_chw_float32() -> None:
    gray = Image.new("RGB", (300, 200), (128, 64, 200))
    array = preprocess(_png_bytes(gray), CONFIG)
    assert array.shape == (3, 224, 224) and array.dtype == np.float32
    expected = (np.array([128, 64, 200]) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(array.mean(axis=(1, 2)), expected, rtol=1e-5)


def test_same_tensor_from_bytes_path_file_and_training_dataset(tmp_path: Path) -> None:
    for suffix in (".jpg", ".png"):
        path = tmp_path / f"photo{suffix}"
        make_image("real", 7, (640, 480)).save(path)
        data = path.read_bytes()
        from_bytes = preprocess(data, CONFIG)
        from_path = preprocess(path, CONFIG)
        with path.open("rb") as handle:
            from_file = preprocess(handle, CONFIG)
        from_dataset, target = ImageDataset([Sample(path, "real")], CONFIG)[0]
        assert target == 1
        for other in (from_path, from_file, from_dataset):
            np.testing.assert_array_equal(from_bytes, other)


@pytest.mark.parametrize(
    ("size", "fmt", "scale"),
    [
        ((4000, 3000), "JPEG", 8),
        ((3000, 1500), "JPEG", 4),  # over 2048 x 2048: as far as the input size allows
        ((2048, 2048), "JPEG", 2),  # within it: half scale at most
        ((1600, 1200), "JPEG", 2),
        ((1024, 768), "JPEG", 2),
        ((1001, 751), "JPEG", 2),  # odd sides: halved and rounded up
        ((400, 300), "JPEG", 1),
        ((1024, 768), "PNG", 1),  # draft mode is JPEG's only
    ],
)
def test_decode_image_is_load_image_and_says_its_scale(size: tuple[int, int], fmt: str, scale: int) -> None:
    """The model's decode, handed on to others (the web app's provenance checks), is the decode load_image does,
    and says at what scale JPEG draft mode made it."""
    buffer = io.BytesIO()
    make_image("real", 5, size).save(buffer, format=fmt, quality=90)
    data = buffer.getvalue()
    decoded = decode_image(data, draft_size=CONFIG.input_size)
    assert decoded.scale == scale
    assert decoded.image.size == ((size[0] + scale - 1) // scale, (size[1] + scale - 1) // scale)
    loaded = load_image(data, draft_size=CONFIG.input_size)
    np.testing.assert_array_equal(np.asarray(decoded.model_image), np.asarray(loaded))
    np.testing.assert_array_equal(image_to_array(decoded.model_image, CONFIG), preprocess(data, CONFIG))
    assert decode_image(data).scale == 1
    # the same, in one call, for the scanner and TorchServe's handler to hand the decode on to the evidence
    array, again = preprocess_decoded(data, CONFIG)
    np.testing.assert_array_equal(array, preprocess(data, CONFIG))
    assert again.scale == scale
    np.testing.assert_array_equal(np.asarray(again.image), np.asarray(decoded.image))


def test_420_jpegs_within_the_half_scale_cap_are_decoded_at_half_scale_and_box_reduced_for_the_model() -> None:
    """Draft mode would decode a 1600 x 1200 JPEG at a quarter for a 224 px input. A 4:2:0 one within
    HALF_SCALE_MAX_PIXELS is decoded at half scale (what the watermark check reads) and box-reduced by 2 for
    the model, which then sees nearly what the quarter-scale decode gave; a 4:4:4 one, or a cap of 0, as before."""
    photo = make_image("real", 6, (1600, 1200))
    data = _jpeg(photo, subsampling=2)
    decoded = decode_image(data, draft_size=224)
    assert (decoded.scale, decoded.reduction, decoded.image.size) == (2, 2, (800, 600))
    assert decoded.model_image.size == (400, 300)
    unheld = decode_image(data, draft_size=224, half_scale_max_pixels=0)
    assert (unheld.scale, unheld.reduction, unheld.image.size) == (4, 1, (400, 300))
    assert unheld.model_image is unheld.image
    moved = np.abs(image_to_array(decoded.model_image, CONFIG) - image_to_array(unheld.model_image, CONFIG))
    assert moved.mean() < 0.05, moved.mean()  # normalised units (one 8-bit level is about 0.017)
    assert decode_image(data, draft_size=224, half_scale_max_pixels=1600 * 1200 - 1).scale == 4
    assert decode_image(_jpeg(photo, subsampling=0), draft_size=224).scale == 4  # 4:4:4: the check decodes it all
    assert HALF_SCALE_MAX_PIXELS == 2048 * 2048 == ProvenanceSettings().watermark_max_pixels


def _jpeg(image: Image.Image, **options: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def test_exif_orientation_is_applied() -> None:
    upright = make_image("ai", 3, (120, 80))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a rotated camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    tagged = _png_bytes(stored, exif=exif)
    assert load_image(tagged).size == (120, 80)
    np.testing.assert_array_equal(preprocess(tagged, CONFIG), preprocess(_png_bytes(upright), CONFIG))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_any_mode_becomes_three_channels(mode: str) -> None:
    image = make_image("real", 1).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if mode == "CMYK" else "PNG")
    assert preprocess(buffer.getvalue(), CONFIG).shape == (3, 224, 224)


def test_input_size_and_stats_come_from_the_config() -> None:
    config = PreprocessConfig(input_size=96, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    white = _png_bytes(Image.new("RGB", (50, 40), (255, 255, 255)))
    array = preprocess(white, config)
    assert array.shape == (3, 96, 96)
    np.testing.assert_allclose(array, 1.0, rtol=1e-6)
    assert PreprocessConfig.from_dict(config.to_dict()) == config


def test_errors_have_reasons() -> None:
    jpeg = io.BytesIO()
    make_image("real", 2, (400, 300)).save(jpeg, format="JPEG")
    cases = {
        "empty": b"",
        "not_an_image": b"<html><body>hello</body></html>",
        "truncated": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
    }
    for reason, data in cases.items():
        with pytest.raises(ImageDecodeError) as caught:
            preprocess(data, CONFIG)
        assert caught.value.reason == reason, (reason, str(caught.value))


def test_oversized_image_refused_from_its_header() -> None:
    data = _png_bytes(Image.new("L", (2000, 1500)))
    with pytest.raises(ImageDecodeError) as caught:
        preprocess(data, CONFIG, max_pixels=1_000_000)
    assert caught.value.reason == "too_large"
    assert "2000x1500" in str(caught.value)
