"""The runtimes that run a trained detector, one small class per engine around one shared base.

- :class:`detector.runtimes.base.Detector`: preprocessing, calibration and the decision, shared;
- :mod:`detector.runtimes.onnx_runtime`: the exported ``.onnx`` file in ONNX Runtime (torch-free);
- :mod:`detector.runtimes.openvino_runtime`: the same file in OpenVINO's CPU plugin (the same answers, faster);
- :mod:`detector.runtimes.torch_eager`: a ``.pt`` checkpoint in eager PyTorch;
- :mod:`detector.runtimes.torch_cuda`: a ``.pt`` checkpoint on a GPU in large batches (fp16, channels-last,
  optionally compiled), with nvJPEG decoding (:mod:`detector.gpu_preprocessing`).

:func:`open_detector` picks the engine from the file name, the device and ``engine`` (:func:`onnx_engine`).
Importing this package imports neither torch nor onnxruntime: each engine is imported when it is opened.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from detector.runtimes.base import Detector

__all__ = ["Detector", "EngineUnavailable", "OnnxEngine", "onnx_engine", "open_detector"]

#: what runs an exported ``.onnx`` on the CPU; ``auto`` is resolved by :func:`onnx_engine`
OnnxEngine = Literal["auto", "onnxruntime", "openvino"]


class EngineUnavailable(RuntimeError):
    """The engine asked for is not installed here; the message names what to install or choose instead."""


def onnx_engine(engine: str = "auto") -> str:
    """``engine``, with ``auto`` resolved: OpenVINO where it is installed, unless ONNX Runtime has a CUDA GPU
    (onnxruntime-gpu), else ONNX Runtime.

    OpenVINO fp32 gives ONNX Runtime's answers (the default model's test labels all alike, P(ai) within 1.2e-6)
    faster: 1.34x the images/s of the bare forward pass on one thread (``make microbench``), and 1.3-1.8x
    the scanner's (``python -m scan.benchmark --engine``; docs/performance.md).
    """
    has_openvino = importlib.util.find_spec("openvino") is not None
    if engine == "openvino" and not has_openvino:
        raise EngineUnavailable("the openvino engine needs OpenVINO: pip install openvino, or choose onnxruntime")
    if engine != "auto":
        return engine
    from detector.runtimes.onnx_runtime import available_providers

    return "onnxruntime" if "CUDAExecutionProvider" in available_providers() or not has_openvino else "openvino"


def open_detector(
    path: Path | str,
    *,
    threads: int | None = None,
    device: str | None = None,
    precision: str = "fp16",
    compile: bool = False,
    engine: str = "onnxruntime",
) -> Detector:
    """``.onnx`` -> ``engine`` on the CPU (ONNX Runtime, OpenVINO in fp32, or ``auto``: :func:`onnx_engine`);
    anything else is taken for a checkpoint and run by PyTorch on ``device``.

    A ``cuda`` device runs a checkpoint in :class:`~detector.runtimes.torch_cuda.CudaDetector` (``precision``
    and ``compile`` are its options) and an ``.onnx`` on ONNX Runtime's CUDA provider, which only
    ``onnxruntime-gpu`` has (an error says so otherwise).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}")
    on_gpu = device is not None and device.startswith("cuda")
    if path.suffix == ".onnx" and not on_gpu and onnx_engine(engine) == "openvino":
        from detector.runtimes.openvino_runtime import OpenVinoDetector

        return OpenVinoDetector(path, threads=threads)
    if path.suffix == ".onnx":
        from detector.runtimes.onnx_runtime import OnnxDetector, available_providers

        providers = available_providers()
        if on_gpu and "CUDAExecutionProvider" not in providers:
            raise EngineUnavailable(
                "this onnxruntime has no CUDA provider: install onnxruntime-gpu in its place, or give the .pt "
                "checkpoint to run it on the GPU with PyTorch"
            )
        if not on_gpu:
            return OnnxDetector(path, threads=threads)
        index = int(device.partition(":")[2] or 0)  # type: ignore[union-attr]
        cuda = ("CUDAExecutionProvider", {"device_id": index})
        return OnnxDetector(path, threads=threads, providers=[cuda, "CPUExecutionProvider"])  # type: ignore[list-item]
    if on_gpu:
        from detector.runtimes.torch_cuda import CudaDetector

        return CudaDetector(path, device=device, precision=precision, compile=compile)  # type: ignore[arg-type]
    from detector.runtimes.torch_eager import TorchDetector

    return TorchDetector(path, threads=threads, device=device)
