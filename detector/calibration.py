"""From logits to an answer: temperature-scaled probabilities and the thresholded decision.

NumPy only, so every serving path (eager PyTorch, ONNX Runtime, TorchServe) turns logits into
verdicts and P(ai) the same way, with the temperature and threshold from the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.labels import AI, REAL, class_index


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``logits / temperature`` along the last axis, computed stably."""
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


#: the three verdicts: ``ai`` and ``real`` outside the band between the two thresholds, ``unsure`` inside it
UNSURE = "unsure"


@dataclass(frozen=True)
class Decision:
    """The answer for one image: a verdict and the calibrated P(ai) it was read from.

    The number that goes with the verdict is always P(ai), never the probability of the verdict:
    "P(AI) 38 %: unsure" cannot contradict itself the way "AI-generated, 38 % confident" did when
    the ``ai`` threshold sat below 0.5.
    """

    #: ``ai``, ``real`` or ``unsure``
    label: str
    #: calibrated probability that the image is AI-generated
    p_ai: float
    probabilities: dict[str, float]
    #: why the verdict is what it is, when something other than the two thresholds decided it
    reason: str | None = None

    @property
    def summary(self) -> str:
        """The verdict and its number in words, the same on every surface: ``P(AI) 38 %: unsure``."""
        return f"P(AI) {100 * self.p_ai:.0f} %: {self.label}"


def verdict(p_ai: float, threshold: float, real_threshold: float | None) -> str:
    """``ai`` from ``threshold`` up, ``real`` at or below ``real_threshold``, ``unsure`` between.

    Without a ``real_threshold`` (models calibrated before the band existed) there is no band: every
    image below ``threshold`` is called real.
    """
    if p_ai >= threshold:
        return AI
    if real_threshold is None or p_ai <= real_threshold:
        return REAL
    return UNSURE


def decide(
    probabilities: np.ndarray,
    classes: list[str] | tuple[str, ...],
    threshold: float,
    real_threshold: float | None = None,
) -> list[Decision]:
    """A :class:`Decision` per row of calibrated probabilities.

    ``threshold`` is chosen at calibration time for a target false-positive rate on real photos and
    ``real_threshold`` for a target share of AI images let through as real; both come from the model's
    metadata, so every runtime decides alike.
    """
    probabilities = np.atleast_2d(probabilities)
    ai = class_index(AI, classes)
    return [
        Decision(
            label=verdict(float(row[ai]), threshold, real_threshold),
            p_ai=float(row[ai]),
            probabilities={name: float(p) for name, p in zip(classes, row, strict=True)},
        )
        for row in probabilities
    ]
