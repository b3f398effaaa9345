"""The frozen-feature probe of input views (``training.probe``), on real images of the data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_module
from training.probe import SIDE, native_crops, residual_spectrum

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "realvsai-v1" / "manifest.csv"
SAMPLES = Path(__file__).resolve().parent / "data"

needs_data = pytest.mark.skipif(not DATA.is_file(), reason="needs ../shared/data/realvsai-v1")


def test_native_crops_are_the_files_own_pixels_and_small_images_are_scaled_up_first() -> None:
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8))
    crops = native_crops(photo, 3, np.random.default_rng(1))
    pixels = np.asarray(photo)
    for crop in crops:
        window = np.asarray(crop)
        assert window.shape == (SIDE, SIDE, 3)
        # each crop is a window of the original, not a resized copy: it is found at some offset
        found = [
            (top, left)
            for top in range(300 - SIDE + 1)
            for left in range(500 - SIDE + 1)
            if np.array_equal(pixels[top, left : left + 4], window[0, :4])
            and np.array_equal(pixels[top : top + SIDE, left : left + SIDE], window)
        ]
        assert found
    small = native_crops(photo.resize((150, 100)), 1, np.random.default_rng(1))[0]
    assert small.size == (SIDE, SIDE)


def test_the_residual_spectrum_sees_the_peaks_that_up_sampling_leaves() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(128, 30, (SIDE, SIDE)).clip(0, 255).astype(np.uint8)
    # nearest-neighbour 2x up-sampling repeats each pixel: energy moves away from the highest frequencies
    upsampled = np.repeat(np.repeat(noise[: SIDE // 2, : SIDE // 2], 2, 0), 2, 1)
    plain = residual_spectrum(Image.fromarray(noise).convert("RGB"))
    doubled = residual_spectrum(Image.fromarray(upsampled).convert("RGB"))
    assert plain.shape == doubled.shape == (48,)
    assert not np.allclose(plain, doubled, atol=0.5)


@needs_data
def test_the_probe_scores_the_whole_image_view_on_unseen_sources(tmp_path: Path) -> None:
    result = run_module("training.probe", "--data", str(DATA), "--per-group", "2", "--output-dir", str(tmp_path))
    rows = [line for line in result.stdout.splitlines() if line.startswith("| whole")]
    assert [row.split("|")[2].strip() for row in rows] == ["all stages", "early blocks", "head (1280)"]
    for row in rows:
        balanced_accuracy, auc = (float(cell) for cell in row.split("|")[3:5])
        assert 0 <= balanced_accuracy <= 1 and 0 <= auc <= 1
    assert (tmp_path / "summary.md").read_text().strip().endswith(rows[-1])
    # features are cached: a second run re-scores without reading the images again
    assert len(list(tmp_path.glob("features-*.npz"))) == 1
