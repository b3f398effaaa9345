"""Shared fixtures: small labelled image folders that the tests make themselves (no network, no ../shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_image(kind: str, seed: int, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A deterministic RGB image; ``ai`` ones are smooth gradients, ``real`` ones are noisy textures.

    The two kinds differ visibly, so a tiny model can start to separate them in a couple of epochs.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "ai":
        phase = rng.uniform(0, 2 * np.pi, 3)
        channels = [127 + 120 * np.sin(x / width * 3 + y / height * 2 + p) for p in phase]
        pixels = np.stack(channels, axis=-1)
    else:
        base = rng.uniform(60, 200, 3)
        pixels = base + rng.normal(0, 45, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_dataset(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """``root/ai/*`` and ``root/real/*``, alternating JPEG and PNG, of a few different sizes."""
    for label_index, label in enumerate(("ai", "real")):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = (64 + 16 * (i % 3), 56 + 8 * (i % 4))
            image = make_image(label, seed * 1000 + label_index * 100 + i, size)
            suffix = ".jpg" if i % 2 == 0 else ".png"
            image.save(folder / f"{label}_{i:03d}{suffix}", quality=92) if suffix == ".jpg" else image.save(
                folder / f"{label}_{i:03d}{suffix}"
            )
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data")
