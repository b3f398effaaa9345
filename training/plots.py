"""PNG plots of an evaluation: confusion matrix, ROC curve with the operating point, reliability diagram."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import CalibrationDisplay  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from detector.calibration import decide  # noqa: E402
from detector.labels import AI, class_index  # noqa: E402
from training.metrics import expected_calibration_error  # noqa: E402


def save_plots(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float, classes: Sequence[str], output_dir: Path
) -> list[Path]:
    """Write the PNGs into ``output_dir``; the ROC curve is skipped when only one class is present."""
    classes = list(classes)
    ai = class_index(AI, classes)
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = [class_index(d.label, classes) for d in decide(probabilities, classes, threshold)]
    written = []

    figure, axes = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(
        labels, predicted, labels=list(range(len(classes))), display_labels=classes, ax=axes, colorbar=False
    )
    axes.set_title(f"Confusion matrix (threshold {threshold:.3f})")
    written.append(_save(figure, output_dir / "confusion_matrix.png"))

    is_ai = labels == ai
    if 0 < is_ai.sum() < len(labels):
        figure, axes = plt.subplots(figsize=(4.5, 4))
        RocCurveDisplay.from_predictions(is_ai, probabilities[:, ai], name="P(ai)", ax=axes)
        fpr = float(np.mean(probabilities[~is_ai, ai] >= threshold))
        tpr = float(np.mean(probabilities[is_ai, ai] >= threshold))
        axes.plot([fpr], [tpr], "o", color="crimson", label=f"operating point ({threshold:.3f})")
        axes.set_xlabel("false-positive rate (real photos called ai)")
        axes.set_ylabel("true-positive rate (ai images caught)")
        axes.legend(loc="lower right")
        axes.set_title("ROC curve, ai as positive")
        written.append(_save(figure, output_dir / "roc_curve.png"))

    figure, axes = plt.subplots(figsize=(4.5, 4))
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    CalibrationDisplay.from_predictions(correct, confidence, n_bins=10, ax=axes, name="top label")
    axes.set_title(f"Reliability (ECE {expected_calibration_error(probabilities, labels):.3f})")
    written.append(_save(figure, output_dir / "reliability.png"))
    return written


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
