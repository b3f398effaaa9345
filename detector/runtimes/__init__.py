"""The runtimes that run a trained detector, one small class per engine around one shared base.

- :class:`detector.runtimes.base.Detector`: preprocessing, calibration and the decision, shared;
- :mod:`detector.runtimes.onnx_runtime`: the exported ``.onnx`` file in ONNX Runtime (torch-free);
- :mod:`detector.runtimes.torch_eager`: a ``.pt`` checkpoint in eager PyTorch.

:func:`open_detector` picks the engine from the file name.  Importing this package imports neither
torch nor onnxruntime: each engine is imported when it is opened.
"""

from __future__ import annotations

from pathlib import Path

from detector.runtimes.base import Detector

__all__ = ["Detector", "open_detector"]


def open_detector(path: Path | str, *, threads: int | None = None, device: str | None = None) -> Detector:
    """``.onnx`` -> ONNX Runtime; anything else is taken for a checkpoint and run by PyTorch on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}")
    if path.suffix == ".onnx":
        from detector.runtimes.onnx_runtime import OnnxDetector

        return OnnxDetector(path, threads=threads)
    from detector.runtimes.torch_eager import TorchDetector

    return TorchDetector(path, threads=threads, device=device)
