"""Shared fixtures: a tiny labelled dataset, a real training run, its ONNX export and the web app serving it.

The helpers they are built from, which test modules import too, live in ``helpers.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FAST_TRAINING, run_module, write_dataset


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data")


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
    from web_process import running_web_server  # needs httpx, which make test-gpu (tests/test_gpu.py) does not

    with running_web_server(exported_model, tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url
