"""A checkpoint run by eager PyTorch, with the same interface as :class:`detector.onnx_runtime.OnnxDetector`.

For consumers that take either a ``.pt`` checkpoint or an exported ``.onnx`` model; :func:`open_detector`
picks the runtime from the file name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from detector.calibration import Decision, calibrated_probabilities, decide
from detector.metadata import CheckpointMetadata
from detector.preprocessing import DEFAULT_MAX_PIXELS, ImageSource, PreprocessConfig, preprocess


class Detector(Protocol):
    """What every runtime offers: metadata, and probabilities for a preprocessed batch."""

    metadata: CheckpointMetadata
    preprocess_config: PreprocessConfig

    @property
    def version(self) -> str: ...

    def probabilities(self, batch: np.ndarray) -> np.ndarray: ...

    def classify(self, batch: np.ndarray) -> list[Decision]: ...

    def preprocess(self, source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray: ...


class TorchDetector:
    """Eager PyTorch on the CPU (channels-last, the faster layout for this network there) or a GPU."""

    def __init__(self, path: Path | str, *, threads: int | None = None, device: str | None = None) -> None:
        import torch

        from detector.checkpoint import load_model

        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, self.metadata = load_model(path)
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        self.preprocess_config = self.metadata.preprocess_config

    @property
    def version(self) -> str:
        return self.metadata.version

    def logits(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            return self.model(inputs.contiguous(memory_format=torch.channels_last)).float().cpu().numpy()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return calibrated_probabilities(self.logits(batch), self.metadata.temperature)

    def classify(self, batch: np.ndarray) -> list[Decision]:
        return decide(self.probabilities(batch), self.metadata.classes, self.metadata.threshold)

    def preprocess(self, source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        return preprocess(source, self.preprocess_config, max_pixels=max_pixels)


def open_detector(path: Path | str, *, threads: int | None = None) -> Detector:
    """``.onnx`` -> ONNX Runtime; anything else is taken for a checkpoint and run by PyTorch."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}")
    if path.suffix == ".onnx":
        from detector.onnx_runtime import OnnxDetector

        return OnnxDetector(path, threads=threads)
    return TorchDetector(path, threads=threads)
