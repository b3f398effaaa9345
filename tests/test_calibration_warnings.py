"""Calibration on a validation split too small for its numbers to mean anything says so, loudly."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from training.calibrate import fit_temperature, threshold_for_fpr

AI, REAL = 0, 1


def _split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    logits = np.stack([rng.normal(0, 2, n), rng.normal(0, 2, n)], axis=1)
    return logits, labels


def test_nine_validation_images_get_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    logits, labels = _split(9)
    with caplog.at_level(logging.WARNING, logger="training.calibrate"):
        fit_temperature(logits, labels)
        threshold_for_fpr(np.linspace(0, 1, 9), labels, target_fpr=0.02)
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("temperature is fitted on only 9 validation images" in m for m in messages), messages
    assert any("chosen on only 4 real images" in m and "at least 50 real images" in m for m in messages), messages


def test_a_large_split_calibrates_quietly(caplog: pytest.LogCaptureFixture) -> None:
    logits, labels = _split(400)
    with caplog.at_level(logging.WARNING, logger="training.calibrate"):
        fit_temperature(logits, labels)
        threshold_for_fpr(np.linspace(0, 1, 400), labels, target_fpr=0.02)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_training_on_a_tiny_split_warns_in_its_log(trained_run: Path) -> None:
    """The session's real training run (24 images: 4 for validation) carries the warning in train.log."""
    log = (trained_run / "train.log").read_text()
    assert "WARNING calibration: the temperature is fitted on only" in log
    assert "WARNING calibration: the threshold for a 2% false-positive rate" in log
