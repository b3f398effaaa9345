"""What every runtime of the model is: metadata, the one preprocessing, and a forward pass.

A runtime (ONNX Runtime, eager PyTorch, and whatever engine comes next) implements :meth:`Detector.logits`
and nothing else; temperature scaling, the threshold decision and the preprocessing are shared here, so
every engine answers the same file with the same rules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from detector.calibration import Decision, calibrated_probabilities, decide
from detector.metadata import CheckpointMetadata
from detector.preprocessing import DEFAULT_MAX_PIXELS, ImageSource, PreprocessConfig, preprocess


class Detector(ABC):
    """A loaded model: preprocess image bytes, score a (N, 3, H, W) float32 batch, decide."""

    def __init__(self, metadata: CheckpointMetadata) -> None:
        self.metadata = metadata

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return self.metadata.preprocess_config

    @property
    def version(self) -> str:
        return self.metadata.version

    @abstractmethod
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw (N, classes) logits for a (N, 3, H, W) float32 batch: the one method an engine implements."""

    def logits_and_cam(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and the (N, h, w) class activation map (:class:`detector.model.ExplainedModel`).

        Engines that can compute the map override this; the map is asked for only when a heatmap is.
        """
        raise NotImplementedError(f"{type(self).__name__} does not compute heatmaps")

    def explain(self, batch: np.ndarray) -> tuple[list[Decision], np.ndarray]:
        """The decisions for a batch and, per image, its class activation map in logit units."""
        logits, cam = self.logits_and_cam(batch)
        return self._decide(calibrated_probabilities(logits, self.metadata.temperature)), cam

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Temperature-calibrated class probabilities, in the order of ``metadata.classes``."""
        return calibrated_probabilities(self.logits(batch), self.metadata.temperature)

    def classify(self, batch: np.ndarray) -> list[Decision]:
        return self._decide(self.probabilities(batch))

    def _decide(self, probabilities: np.ndarray) -> list[Decision]:
        meta = self.metadata
        return decide(probabilities, meta.classes, meta.threshold, meta.real_threshold)

    def preprocess(self, source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """The core's preprocessing with this model's parameters (raises ImageDecodeError)."""
        return preprocess(source, self.preprocess_config, max_pixels=max_pixels)
