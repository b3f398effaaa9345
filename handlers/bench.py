"""Forward-pass speed of the handler's two runtimes on one model: ``python -m handlers.bench``.

Why the ONNX archive is the default: the handler runs one forward pass per batch, and this times
exactly that call (``Detector.probabilities``) for the exported ``.onnx`` under ONNX Runtime and
the ``.pt`` checkpoint under eager PyTorch, same batch, same threads, after a warm-up. It prints
figures; nothing asserts on them.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict

from detector.torch_runtime import Detector, open_detector


class BenchSettings(BaseSettings):
    """``python -m handlers.bench``: ONNX Runtime vs eager PyTorch, batch by batch."""

    model_config = SettingsConfigDict(
        env_prefix="DETECTOR_TS_BENCH_", cli_kebab_case=True, cli_prog_name="python -m handlers.bench"
    )

    checkpoint: Path = Field(description="the .pt checkpoint (runs/NAME/model.pt)")
    onnx: Path = Field(description="its ONNX export (make export: model_store/detector.onnx)")
    batch_size: int = Field(8, ge=1, description="images per forward pass (torchserve/model-config.yaml batchSize)")
    batches: int = Field(20, ge=1, description="timed forward passes per runtime")
    warmup: int = Field(3, ge=0, description="untimed forward passes first")
    threads: int | None = Field(None, ge=1, description="intra-op threads (default: the runtime's)")


def time_batches(detector: Detector, batch: np.ndarray, batches: int, warmup: int) -> list[float]:
    """Seconds per forward pass, one figure per timed batch."""
    for _ in range(warmup):
        detector.probabilities(batch)
    spent = []
    for _ in range(batches):
        started = time.perf_counter()
        detector.probabilities(batch)
        spent.append(time.perf_counter() - started)
    return spent


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(BenchSettings, cli_args=argv)
    onnx = open_detector(settings.onnx, threads=settings.threads)
    eager = open_detector(settings.checkpoint, threads=settings.threads)
    size = onnx.preprocess_config.input_size
    batch = np.random.default_rng(0).standard_normal((settings.batch_size, 3, size, size), dtype=np.float32)
    print(f"model {onnx.version}, {size} px, batch {settings.batch_size}, {settings.batches} batches")
    medians = {}
    for name, detector in (("onnxruntime", onnx), ("torch eager", eager)):
        spent = time_batches(detector, batch, settings.batches, settings.warmup)
        medians[name] = statistics.median(spent)
        print(
            f"{name:12s} median {1000 * medians[name]:8.1f} ms/batch  "
            f"{settings.batch_size / medians[name]:7.1f} images/s  (min {1000 * min(spent):.1f} ms)"
        )
    print(f"onnxruntime is {medians['torch eager'] / medians['onnxruntime']:.1f}x faster than eager")
    return 0


if __name__ == "__main__":
    sys.exit(main())
