"""ONNX export: metadata carried, dynamic batch, and the same answers as PyTorch on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from helpers import run_module
from test_model import GRACE_HOPPER

from detector.calibration import calibrated_probabilities
from detector.checkpoint import load_checkpoint, load_model
from detector.preprocessing import preprocess
from detector.runtimes.onnx_runtime import OnnxDetector
from export.onnx import PARITY_TOLERANCE, check_parity


def _real_images(run: Path) -> list[Path]:
    return [GRACE_HOPPER, *sorted((run.parent.parent / "data").rglob("*.*"))[::3]]


def test_export_carries_the_checkpoint_metadata(trained_run: Path, exported_model: Path) -> None:
    meta = load_checkpoint(trained_run / "model.pt").metadata
    props = {p.key: p.value for p in onnx.load(str(exported_model)).metadata_props}
    assert props["classes"] == "ai,real" and props["input_size"] == "96"
    assert float(props["temperature"]) == meta.temperature and float(props["threshold"]) == meta.threshold
    assert props["version"] == meta.version
    assert [float(v) for v in props["mean"].split(",")] == list(meta.preprocess_config.mean)
    assert OnnxDetector(exported_model).metadata == meta


def test_onnx_runtime_matches_pytorch_on_real_images(trained_run: Path, exported_model: Path) -> None:
    images = _real_images(trained_run)
    assert check_parity(trained_run / "model.pt", exported_model, images) < PARITY_TOLERANCE
    model, meta = load_model(trained_run / "model.pt")
    detector = OnnxDetector(exported_model)
    batch = np.stack([preprocess(path, meta.preprocess_config) for path in images])
    with torch.inference_mode():
        expected = calibrated_probabilities(model(torch.from_numpy(batch)).numpy(), meta.temperature)
    # any batch size: the batch axis is dynamic, and each image's answer is independent of the others
    for size in (1, 5, len(images)):
        np.testing.assert_allclose(detector.probabilities(batch[:size]), expected[:size], atol=PARITY_TOLERANCE)


def test_export_command_reports_parity_and_fails_cleanly_without_a_checkpoint(tmp_path: Path) -> None:
    paths = ["--checkpoint", str(tmp_path / "none.pt"), "--output", str(tmp_path / "m.onnx")]
    result = run_module("export.onnx", *paths, returncode=2, timeout=120)
    assert "none.pt" in result.stderr and "Traceback" not in result.stderr


def test_export_command_output(trained_run: Path, tmp_path: Path) -> None:
    result = run_module(
        "export.onnx",
        "--checkpoint",
        str(trained_run / "model.pt"),
        "--output",
        str(tmp_path / "m.onnx"),
        "--parity-images",
        str(GRACE_HOPPER),
    )
    assert "parity on 1 images" in result.stdout and (tmp_path / "m.onnx").stat().st_size > 1_000_000
