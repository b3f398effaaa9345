"""The exported detector run by ONNX Runtime: torch-free inference for the web app, handler and scanners.

Everything it needs to turn image bytes into answers is inside the ``.onnx`` file: the weights and,
as metadata properties, the preprocessing parameters, class order, temperature, threshold and
version written by ``export.onnx``.  The GPU execution provider is used when ``onnxruntime-gpu``
offers it, the CPU one otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from detector.calibration import Decision, calibrated_probabilities, decide
from detector.metadata import CheckpointMetadata
from detector.preprocessing import DEFAULT_MAX_PIXELS, ImageSource, preprocess

#: the metadata property holding the full CheckpointMetadata as JSON
METADATA_KEY = "detector_metadata"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def available_providers() -> list[str]:
    """CUDA first when this onnxruntime build and machine have it, the CPU always."""
    preferred = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in preferred if p in ort.get_available_providers()]


class OnnxDetector:
    """Load once, then classify batches of preprocessed arrays or of raw image bytes."""

    def __init__(self, path: Path | str, *, threads: int | None = None, providers: Sequence[str] | None = None):
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), sess_options=options, providers=list(providers or available_providers())
        )
        props = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ValueError(f"{self.path} has no {METADATA_KEY!r} metadata: export it with `make export`")
        self.metadata = CheckpointMetadata.from_json(props[METADATA_KEY])
        self.preprocess_config = self.metadata.preprocess_config

    @property
    def version(self) -> str:
        return self.metadata.version

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits for a (N, 3, H, W) float32 batch."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return calibrated_probabilities(self.logits(batch), self.metadata.temperature)

    def classify(self, batch: np.ndarray) -> list[Decision]:
        return decide(self.probabilities(batch), self.metadata.classes, self.metadata.threshold)

    def preprocess(self, source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """The core's preprocessing with this model's parameters (raises ImageDecodeError)."""
        return preprocess(source, self.preprocess_config, max_pixels=max_pixels)
