"""Evaluation metrics against values worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.metrics import compute_metrics, expected_calibration_error, format_report
from training.plots import save_plots

AI, REAL = 0, 1


def _known_case() -> tuple[np.ndarray, np.ndarray]:
    """10 ai images, 7 caught; 10 real photos, 2 wrongly called ai. P(ai) is 0.9 or 0.2."""
    labels = np.array([AI] * 10 + [REAL] * 10)
    p_ai = np.array([0.9] * 7 + [0.2] * 3 + [0.9] * 2 + [0.2] * 8)
    return labels, np.stack([p_ai, 1 - p_ai], axis=1)


def test_metrics_match_a_known_confusion_matrix() -> None:
    labels, probabilities = _known_case()
    metrics = compute_metrics(labels, probabilities, threshold=0.5)
    tp, fn, fp, tn = 7, 3, 2, 8
    assert metrics["confusion_matrix"] == [[tp, fn], [fp, tn]]
    assert metrics["n"] == 20
    assert metrics["accuracy"] == pytest.approx((tp + tn) / 20)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert metrics["precision"] == pytest.approx(precision)
    assert metrics["recall"] == pytest.approx(recall)
    assert metrics["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    real = metrics["classification_report"]["real"]
    assert real["precision"] == pytest.approx(tn / (tn + fn))
    assert real["recall"] == pytest.approx(tn / (tn + fp))
    assert real["support"] == 10
    # ROC-AUC: pairs (ai, real) ranked correctly; ties count half.
    # ai at 0.9 (7) beat real at 0.2 (8) and tie real at 0.9 (2); ai at 0.2 (3) tie real at 0.2 (8).
    auc = (7 * 8 + 0.5 * 7 * 2 + 0.5 * 3 * 8) / (10 * 10)
    assert metrics["roc_auc"] == pytest.approx(auc)


def test_threshold_moves_the_decision() -> None:
    labels, probabilities = _known_case()
    strict = compute_metrics(labels, probabilities, threshold=0.95)
    assert strict["confusion_matrix"] == [[0, 10], [0, 10]]
    assert strict["precision"] == 0.0 and strict["recall"] == 0.0


def test_ece_by_hand() -> None:
    # confidences 0.9, 0.9 (one right, one wrong) and 0.6 (right), 15 bins:
    # bin (0.8667, 0.9333]: |0.9 - 0.5| * 2/3; bin (0.5333, 0.6]: |0.6 - 1| * 1/3
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    labels = np.array([AI, REAL, REAL])
    expected = 0.4 * 2 / 3 + 0.4 * 1 / 3
    assert expected_calibration_error(probabilities, labels) == pytest.approx(expected)
    perfectly_sure_and_right = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfectly_sure_and_right, np.array([AI, REAL])) == 0.0


def test_one_class_only_does_not_crash(tmp_path: Path) -> None:
    labels = np.array([REAL] * 4)
    probabilities = np.array([[0.1, 0.9]] * 4)
    metrics = compute_metrics(labels, probabilities, threshold=0.5)
    assert metrics["roc_auc"] is None and metrics["accuracy"] == 1.0
    assert [p.name for p in save_plots(labels, probabilities, 0.5, ["ai", "real"], tmp_path)] == [
        "confusion_matrix.png",
        "reliability.png",
    ]


def test_report_and_plots(tmp_path: Path) -> None:
    labels, probabilities = _known_case()
    metrics = compute_metrics(labels, probabilities, threshold=0.5)
    report = format_report(metrics, title="Known case")
    assert "Known case" in report and "accuracy   0.7500" in report
    assert "ai" in report and "real" in report and "confusion matrix" in report
    written = save_plots(labels, probabilities, 0.5, ["ai", "real"], tmp_path)
    assert {p.name for p in written} == {"confusion_matrix.png", "roc_curve.png", "reliability.png"}
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plain_lists_and_json(tmp_path: Path) -> None:
    labels, probabilities = _known_case()
    metrics = compute_metrics(labels.tolist(), probabilities.tolist(), threshold=0.5)
    assert json.loads(json.dumps(metrics, allow_nan=False)) == metrics
    assert len(save_plots(labels.tolist(), probabilities.tolist(), 0.5, ["ai", "real"], tmp_path)) == 3


def test_empty_split_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="zero images"):
        compute_metrics(np.array([], dtype=int), np.zeros((0, 2)), threshold=0.5)
