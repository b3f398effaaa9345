"""Test-split metrics as plain JSON-ready values, and a readable text report of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from detector.calibration import UNSURE, decide
from detector.labels import AI, CLASSES, class_index


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the bin-size-weighted gap between confidence and accuracy over equal-width bins."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 cannot occur for a max
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(error)


def compute_metrics(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float, classes: Sequence[str] = CLASSES
) -> dict[str, Any]:
    """Everything the evaluation reports, with ``ai`` as the positive class and the decision at ``threshold``."""
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(labels) == 0:
        raise ValueError("cannot compute metrics on zero images")
    classes = list(classes)
    ai = class_index(AI, classes)
    predicted = np.array([class_index(d.label, classes) for d in decide(probabilities, classes, threshold)])
    is_ai = labels == ai
    indices = list(range(len(classes)))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, labels=[ai], average=None, zero_division=0
    )
    roc_auc = float(roc_auc_score(is_ai, probabilities[:, ai])) if 0 < is_ai.sum() < len(labels) else None
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(np.mean([np.mean(predicted[labels == c] == c) for c in np.unique(labels)])),
        "real_flagged": float((predicted[~is_ai] == ai).mean()) if (~is_ai).any() else None,
        "precision": float(precision[0]),
        "recall": float(recall[0]),
        "f1": float(f1[0]),
        "roc_auc": roc_auc,
        "ece": expected_calibration_error(probabilities, labels),
        "threshold": float(threshold),
        "classes": classes,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
        "classification_report": classification_report(
            labels, predicted, labels=indices, target_names=classes, output_dict=True, zero_division=0
        ),
    }


def format_report(metrics: dict[str, Any], title: str = "Test split") -> str:
    """The metrics as text a person reads: headline numbers, per-class table, confusion matrix."""
    classes = metrics["classes"]
    auc = "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.4f}"
    lines = [
        title,
        "=" * len(title),
        f"images     {metrics['n']}",
        f"accuracy   {metrics['accuracy']:.4f}",
        f"balanced   {metrics['balanced_accuracy']:.4f}   (mean of the per-class recalls)",
        f"precision  {metrics['precision']:.4f}   (ai = positive class)",
        f"recall     {metrics['recall']:.4f}",
        f"f1         {metrics['f1']:.4f}",
        f"ROC-AUC    {auc}",
        f"ECE        {metrics['ece']:.4f}",
        "",
        f"{'class':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    report = metrics["classification_report"]
    for name in [*classes, "macro avg", "weighted avg"]:
        row = report[name]
        lines.append(
            f"{name:<14}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1-score']:>10.4f}{row['support']:>10.0f}"
        )
    width = max(len(c) for c in classes) + 2
    lines += [
        "",
        "confusion matrix (rows: true, columns: predicted)",
        " " * width + "".join(f"{c:>{width}}" for c in classes),
    ]
    for name, row in zip(classes, metrics["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines) + "\n"


def group_table(
    groups: Sequence[str], labels: Sequence[str], predicted: Sequence[str], p_ai: Sequence[float]
) -> list[dict[str, Any]]:
    """Per group (a source, a generator) and true label: images, share classified right, mean P(ai).

    One source is mostly one label, so its accuracy is the recall of that label on it: the rows
    say which kinds of images the model gets wrong, which one global figure hides.
    """
    cells: dict[tuple[str, str], list[tuple[bool, float]]] = {}
    for group, label, said, p in zip(groups, labels, predicted, p_ai, strict=True):
        cells.setdefault((group, label), []).append((said == label, float(p)))
    return [
        {
            "group": group,
            "label": label,
            "n": len(cell),
            "accuracy": float(np.mean([c for c, _ in cell])),
            "mean_p_ai": float(np.mean([p for _, p in cell])),
        }
        for (group, label), cell in sorted(cells.items())
    ]


def format_group_table(rows: Sequence[dict[str, Any]], title: str, width: int = 60) -> str:
    """The table as fixed-width text; group names longer than ``width`` are cut."""

    def cut(name: str) -> str:
        return name if len(name) <= width else name[: width - 1] + "…"

    width = min(width, max([len(title), *(len(r["group"]) for r in rows)])) + 2
    lines = [f"{title:<{width}}{'label':>6}{'n':>6}{'accuracy':>10}{'mean P(ai)':>12}"]
    for r in rows:
        lines.append(
            f"{cut(r['group']):<{width}}{r['label']:>6}{r['n']:>6}{r['accuracy']:>10.3f}{r['mean_p_ai']:>12.3f}"
        )
    return "\n".join(lines) + "\n"


def unsure_band(verdicts: Sequence[str], truth: Sequence[str]) -> dict[str, float]:
    """The share of verdicts that are ``unsure``, and the accuracy of the ``ai``/``real`` ones outside it."""
    verdicts_array, truth_array = np.asarray(verdicts), np.asarray(truth)
    decided = verdicts_array != UNSURE
    return {
        "unsure": float(1 - decided.mean()),
        "accuracy_outside_unsure": float((verdicts_array[decided] == truth_array[decided]).mean())
        if decided.any()
        else float("nan"),
    }
