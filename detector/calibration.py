"""From logits to an answer: temperature-scaled probabilities and the thresholded decision.

NumPy only, so every serving path (eager PyTorch, ONNX Runtime, TorchServe) turns logits into
labels and confidences the same way, with the temperature and threshold from the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.labels import AI, class_index


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``logits / temperature`` along the last axis, computed stably."""
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Decision:
    """The answer for one image."""

    label: str
    #: calibrated probability of ``label``
    confidence: float
    probabilities: dict[str, float]


def decide(probabilities: np.ndarray, classes: list[str] | tuple[str, ...], threshold: float) -> list[Decision]:
    """Label each row ``ai`` when its P(ai) reaches ``threshold``, otherwise the likeliest other class.

    The threshold is chosen at calibration time for a target false-positive rate on real photos,
    so it is usually not 0.5; the confidence is still the calibrated probability of the label given.
    """
    probabilities = np.atleast_2d(probabilities)
    ai = class_index(AI, classes)
    decisions = []
    for row in probabilities:
        if row[ai] >= threshold:
            index = ai
        else:
            others = row.copy()
            others[ai] = -np.inf
            index = int(np.argmax(others))
        decisions.append(
            Decision(
                label=classes[index],
                confidence=float(row[index]),
                probabilities={name: float(p) for name, p in zip(classes, row, strict=True)},
            )
        )
    return decisions
