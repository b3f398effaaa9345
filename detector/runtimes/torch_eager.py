"""A ``.pt`` checkpoint run by eager PyTorch, for consumers that take a checkpoint as well as an export."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detector.runtimes.base import Detector


class TorchDetector(Detector):
    """Eager PyTorch on the CPU (channels-last, the faster layout for this network there) or a GPU."""

    def __init__(self, path: Path | str, *, threads: int | None = None, device: str | None = None) -> None:
        import torch

        from detector.checkpoint import load_model
        from detector.model import ExplainedModel

        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, metadata = load_model(path)
        super().__init__(metadata)
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        self.explained = ExplainedModel(self.model, metadata.classes)

    def _inputs(self, batch: np.ndarray):  # noqa: ANN202 (a torch.Tensor; torch is imported lazily)
        torch = self._torch
        inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        return inputs.contiguous(memory_format=torch.channels_last)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._inputs(batch)).float().cpu().numpy()

    def logits_and_cam(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            logits, cam = self.explained(self._inputs(batch))
            return logits.float().cpu().numpy(), cam.float().cpu().numpy()
