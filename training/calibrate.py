"""Calibration fitted on the validation split: a temperature for the confidence, a threshold for the decision."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_curve

from detector.calibration import calibrated_probabilities

log = logging.getLogger(__name__)

#: Fewer validation images than this and a fitted temperature is mostly noise: the NLL of a handful of
#: images is minimised by an extreme T (a tiny split the model gets right drives T to its 0.05 bound), and
#: the confidence it produces means nothing. Temperature scaling is usually fitted on thousands.
MIN_TEMPERATURE_IMAGES = 100

#: log-temperature search interval: T in [0.05, 20] covers any network worth calibrating
_LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(20.0)))


def _nll(log_temperature: float, logits: np.ndarray, labels: np.ndarray) -> float:
    log_probabilities = log_softmax(logits / np.exp(log_temperature), axis=1)
    return float(-log_probabilities[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling (Guo et al., 2017): the T > 0 minimising the NLL of softmax(logits / T).

    One scalar cannot change which class is likeliest, only how sure the model claims to be, so
    it fixes over-confidence without touching accuracy.  Optimised over log T, where the NLL is
    smooth and T stays positive.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("cannot fit a temperature on zero validation images")
    if len(labels) < MIN_TEMPERATURE_IMAGES:
        log.warning(
            "calibration: the temperature is fitted on only %d validation images (fewer than %d): the confidence "
            "it gives will not mean what it says; use a larger validation split (--val-fraction, or more data)",
            len(labels),
            MIN_TEMPERATURE_IMAGES,
        )
    result = minimize_scalar(_nll, bounds=_LOG_T_BOUNDS, args=(logits, labels), method="bounded")
    return float(np.exp(result.x))


def threshold_for_fpr(p_ai: np.ndarray, labels: np.ndarray, target_fpr: float = 0.02, ai_index: int = 0) -> float:
    """The lowest threshold on P(ai) whose false-positive rate on real images stays within ``target_fpr``.

    An image is called ``ai`` when ``p_ai >= threshold``.  Among admissible thresholds the lowest
    catches the most AI images.  When even the strictest one exceeds the target, the threshold is
    put just above the highest real score, so no real image of this split is called ``ai``.
    """
    p_ai = np.asarray(p_ai, dtype=np.float64)
    is_ai = np.asarray(labels) == ai_index
    if is_ai.all():
        raise ValueError("cannot choose a threshold for a false-positive rate without real images")
    real = int((~is_ai).sum())
    # the false-positive rate measured on n real images moves in steps of 1/n: below 1/target it cannot
    # tell the target from zero, and the threshold lands wherever this split's highest real score is
    needed = math.ceil(1 / target_fpr - 1e-9) if target_fpr > 0 else MIN_TEMPERATURE_IMAGES
    if real < needed:
        log.warning(
            "calibration: the threshold for a %g%% false-positive rate is chosen on only %d real images (the "
            "rate moves in steps of %.1f%%): it will not hold on new photos; use at least %d real images in "
            "the validation split",
            100 * target_fpr,
            real,
            100 / real,
            needed,
        )
    with warnings.catch_warnings():
        # without ai images the TPR is undefined, but the FPR this needs is still well defined
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, _, thresholds = roc_curve(is_ai, p_ai, drop_intermediate=False)
    finite = np.isfinite(thresholds) & (fpr <= target_fpr)
    if finite.any():
        return float(np.clip(thresholds[finite].min(), 0.0, 1.0))
    return float(min(np.nextafter(p_ai[~is_ai].max(), np.inf), 1.0))


def real_threshold_for_miss_rate(
    p_ai: np.ndarray, labels: np.ndarray, target_miss_rate: float = 0.10, threshold: float = 1.0, ai_index: int = 0
) -> float:
    """The highest threshold on P(ai) at or below which at most ``target_miss_rate`` of AI images fall.

    Images at or below it are called ``real``; between it and the ``ai`` ``threshold`` they are
    ``unsure``. The highest admissible value makes the ``unsure`` band as narrow as the target allows;
    it never rises above ``threshold`` (where the band would vanish, every image is ``ai`` or ``real``).
    """
    p_ai = np.asarray(p_ai, dtype=np.float64)
    ai_scores = np.sort(p_ai[np.asarray(labels) == ai_index])
    if len(ai_scores) == 0:
        raise ValueError("cannot choose a threshold for AI images let through without AI images")
    allowed = math.floor(target_miss_rate * len(ai_scores) + 1e-9)  # AI images that may fall at or below it
    if allowed == 0:
        below = float(np.nextafter(ai_scores[0], -np.inf))  # just under the lowest AI score
    else:
        # at the allowed-th lowest AI score, unless the next one ties with it (then just under it)
        cut = ai_scores[allowed - 1]
        below = float(cut if allowed == len(ai_scores) or ai_scores[allowed] > cut else np.nextafter(cut, -np.inf))
    return float(np.clip(min(below, np.nextafter(threshold, -np.inf)), 0.0, 1.0))


@dataclass(frozen=True)
class Calibration:
    """What calibration puts in a checkpoint: the temperature and the two thresholds on P(ai)."""

    temperature: float
    threshold: float
    real_threshold: float

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return calibrated_probabilities(logits, self.temperature)


def fit_calibration(
    logits: np.ndarray, labels: np.ndarray, target_fpr: float, target_miss_rate: float, ai_index: int = 0
) -> Calibration:
    """The temperature, then the ``ai`` threshold for ``target_fpr`` and the ``real`` one for ``target_miss_rate``."""
    temperature = fit_temperature(logits, labels)
    p_ai = calibrated_probabilities(logits, temperature)[:, ai_index]
    threshold = threshold_for_fpr(p_ai, labels, target_fpr, ai_index=ai_index)
    real_threshold = real_threshold_for_miss_rate(p_ai, labels, target_miss_rate, threshold, ai_index=ai_index)
    return Calibration(temperature, threshold, real_threshold)
