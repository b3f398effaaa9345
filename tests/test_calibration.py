"""Temperature scaling and the false-positive-rate threshold, on models whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from detector.calibration import calibrated_probabilities, decide
from training.calibrate import fit_temperature, real_threshold_for_miss_rate, threshold_for_fpr
from training.metrics import expected_calibration_error

AI, REAL = 0, 1


def _model(over_confidence: float, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a model whose true P(ai) is known; ``over_confidence`` > 1 scales its logits up.

    Labels are drawn from the true probabilities, so at ``over_confidence == 1`` the model is
    calibrated by construction and larger values make it claim more certainty than it has.
    """
    rng = np.random.default_rng(seed)
    log_odds = rng.normal(0.0, 1.5, n)  # log P(ai) / P(real)
    p_ai = 1 / (1 + np.exp(-log_odds))
    labels = np.where(rng.random(n) < p_ai, AI, REAL)
    logits = np.stack([log_odds / 2, -log_odds / 2], axis=1) * over_confidence
    return logits, labels


def test_calibration_lowers_the_ece_of_an_over_confident_model() -> None:
    logits, labels = _model(over_confidence=6.0)
    val, test = slice(0, 2000), slice(2000, None)
    temperature = fit_temperature(logits[val], labels[val])
    assert temperature == pytest.approx(6.0, rel=0.15)
    before = expected_calibration_error(calibrated_probabilities(logits[test], 1.0), labels[test])
    after = expected_calibration_error(calibrated_probabilities(logits[test], temperature), labels[test])
    assert before > 0.1
    assert after < before / 2
    # one scalar cannot change which class is likeliest
    np.testing.assert_array_equal(
        calibrated_probabilities(logits, 1.0).argmax(1), calibrated_probabilities(logits, temperature).argmax(1)
    )


def test_calibrated_model_keeps_a_temperature_near_one() -> None:
    logits, labels = _model(over_confidence=1.0)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.15)


def test_threshold_meets_the_false_positive_target_and_is_the_lowest_that_does() -> None:
    logits, labels = _model(over_confidence=1.0, seed=3)
    p_ai = calibrated_probabilities(logits, 1.0)[:, AI]
    real = labels == REAL
    for target in (0.01, 0.02, 0.10):
        threshold = threshold_for_fpr(p_ai, labels, target)
        assert np.mean(p_ai[real] >= threshold) <= target
        lower = np.max(p_ai[p_ai < threshold])  # the next score down
        assert np.mean(p_ai[real] >= lower) > target
        # decide() applies the same rule
        called_ai = [d.label == "ai" for d in decide(np.stack([p_ai, 1 - p_ai], 1), ["ai", "real"], threshold)]
        np.testing.assert_array_equal(called_ai, p_ai >= threshold)


def test_threshold_needs_real_images() -> None:
    with pytest.raises(ValueError, match="without real images"):
        threshold_for_fpr(np.array([0.9, 0.8]), np.array([AI, AI]))


@pytest.mark.filterwarnings("error")
def test_threshold_without_ai_images_still_meets_the_target() -> None:
    p_ai = np.linspace(0.0, 0.99, 100)
    threshold = threshold_for_fpr(p_ai, np.full(100, REAL), target_fpr=0.05)
    assert np.mean(p_ai >= threshold) == pytest.approx(0.05)


def test_threshold_above_every_real_score_when_no_finite_threshold_meets_the_target() -> None:
    # the real photo at 0.97 scores above every ai image, so with a 0 % target only a threshold
    # just above 0.97 qualifies (finite and at most 1)
    p_ai = np.array([0.5, 0.97, 0.9, 0.8])
    threshold = threshold_for_fpr(p_ai, np.array([REAL, REAL, AI, AI]), target_fpr=0.0)
    assert 0.97 < threshold <= 1.0 and np.isfinite(threshold)
    assert threshold_for_fpr(np.array([1.0, 0.9]), np.array([REAL, AI]), target_fpr=0.0) == 1.0


def test_real_threshold_lets_through_at_most_the_target_share_of_ai_images() -> None:
    logits, labels = _model(over_confidence=1.0, seed=5)
    p_ai = calibrated_probabilities(logits, 1.0)[:, AI]
    ai = labels == AI
    threshold = threshold_for_fpr(p_ai, labels, 0.02)
    for target in (0.02, 0.10, 0.30):
        real_threshold = real_threshold_for_miss_rate(p_ai, labels, target, threshold)
        assert real_threshold < threshold
        assert np.mean(p_ai[ai] <= real_threshold) <= target
        higher = np.min(p_ai[ai & (p_ai > real_threshold)])  # the next AI score up would let through too many
        assert np.mean(p_ai[ai] <= higher) > target
        verdicts = np.array(
            [d.label for d in decide(np.stack([p_ai, 1 - p_ai], 1), ["ai", "real"], threshold, real_threshold)]
        )
        np.testing.assert_array_equal(verdicts == "unsure", (p_ai > real_threshold) & (p_ai < threshold))
        np.testing.assert_array_equal(verdicts == "real", p_ai <= real_threshold)
    # a target wide enough to swallow the band leaves none: everything is ai or real
    assert real_threshold_for_miss_rate(p_ai, labels, 0.99, threshold) < threshold


def test_decision_shows_p_ai_with_its_verdict() -> None:
    low_threshold = decide(np.array([[0.382, 0.618]]), ["ai", "real"], 0.3, 0.1)[0]
    assert low_threshold.label == "ai" and low_threshold.p_ai == pytest.approx(0.382)
    assert low_threshold.summary == "P(AI) 38 %: ai"
    assert decide(np.array([[0.2, 0.8]]), ["ai", "real"], 0.3, 0.1)[0].summary == "P(AI) 20 %: unsure"
    assert decide(np.array([[0.2, 0.8]]), ["ai", "real"], 0.3)[0].label == "real"  # no band without real_threshold
