"""Helpers the test modules import (``from helpers import ...``): images and labelled folders that the tests
make themselves (no network, no ../shared), and commands run as a user would run them.

``tests/`` is on ``sys.path`` the way it is for ``conftest.py``: it has no ``__init__.py``, so pytest's default
``prepend`` import mode puts the folder first on the path. Fixtures stay in ``conftest.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
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


def run_module(module: str, *args: str, timeout: float = 600, returncode: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` as a user would; fail the test with its stderr unless it exits ``returncode``.

    A usage error (``returncode=2``) is what the commands give for a missing input, before reading any data.
    """
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == returncode, result.stderr[-3000:]
    return result


#: small inputs and batches keep a CPU run of the whole pipeline to seconds
FAST_TRAINING = ["--input-size", "96", "--batch-size", "8", "--workers", "0", "--device", "cpu"]


def with_thresholds(model: Path, output: Path, threshold: float, real_threshold: float | None) -> Path:
    """A copy of an exported ``model`` whose metadata calls images ``ai`` from ``threshold`` and ``real`` up to
    ``real_threshold`` (``unsure`` between): the verdicts of a model calibrated with that band, same weights."""
    from detector.runtimes.onnx_runtime import OnnxDetector
    from export.onnx import attach_metadata

    shutil.copyfile(model, output)
    meta = OnnxDetector(model).metadata
    attach_metadata(output, replace(meta, threshold=threshold, real_threshold=real_threshold))
    return output
