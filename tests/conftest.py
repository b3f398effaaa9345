"""Shared fixtures: small labelled image folders that the tests make themselves (no network, no ../shared)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from web_process import running_web_server  # noqa: F401 - tests import it from here too


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


def run_module(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` as a user would; fail the test with its stderr if it fails."""
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


#: small inputs and batches keep a CPU run of the whole pipeline to seconds
FAST_TRAINING = ["--input-size", "96", "--batch-size", "8", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-epoch training run (pretrained Lite0, 24 images), calibrated and evaluated."""
    root = tmp_path_factory.mktemp("training")
    data = write_dataset(root / "data", per_class=12)
    run_module(
        "training.train",
        "--data",
        str(data),
        "--epochs",
        "2",
        "--output-dir",
        str(root / "runs"),
        "--run-name",
        "tiny",
        *FAST_TRAINING,
    )
    return root / "runs" / "tiny"


@pytest.fixture(scope="session")
def exported_model(trained_run: Path) -> Path:
    """The tiny run's calibrated model exported to ONNX by the export command, parity-checked."""
    output = trained_run / "model.onnx"
    run_module("export.onnx", "--checkpoint", str(trained_run / "model.pt"), "--output", str(output))
    return output


@pytest.fixture(scope="session")
def web_server(exported_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The web app in a real uvicorn process (``python -m serving``), on a free loopback port."""
    with running_web_server(exported_model, tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url
