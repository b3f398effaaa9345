"""A ``.pt`` checkpoint on a GPU, in large batches: fp16 autocast, channels-last, optionally ``torch.compile``d.

On a GPU the forward pass of this small network costs little (issue #14, one H200: EfficientNet-B0 at
batch 256 runs 10,800 images/s in fp32, 21,300 with channels-last + bf16 autocast, 30,100 compiled), so
this runtime is built around the batch: :meth:`CudaDetector.classify_files` decodes a whole batch on the
device (:mod:`detector.gpu_preprocessing`, nvJPEG) and runs it in slices of at most ``max_batch``.

``precision="fp16"`` (the default) runs the network under float16 autocast and appends ``-fp16`` to the
version, so answers say they came from the lower precision; ``"bf16"`` does the same in bfloat16;
``"fp32"`` keeps full precision (TF32 is turned off for it). fp16 and bf16 run at the same rate on the
tensor cores of an A100, H100 or H200, but fp16 keeps 3 more bits of mantissa: against the CPU path,
P(ai) moved by 0.0006 on average in fp16 and 0.0044 in bf16 on 1,200 images of the data set, and the
labels of 501 camera-size originals agreed on 99.2 % in fp16 against 98.4 % in bf16, short of the
issue's 99 % (docs/performance.md, "On a GPU"). fp16's price is its range (at most 65,504): a row whose
logits overflow is run again in fp32 (:meth:`CudaDetector.logits`), so no answer is lost to it.
(Training keeps bf16, whose range needs no loss scaling: ``training/engine.py``.)
``compile=True`` compiles the network with ``torch.compile``; each batch is padded to the next of a few
fixed sizes (:data:`COMPILED_BATCHES`), so that TorchServe's batches of every size cost a handful of
compilations, not one per size. The class activation map (``logits_and_cam``) runs eagerly.

The device may be the CPU (``device="cpu"``): that is how the tests check the whole pipeline on machines
without a GPU; it is not faster than :class:`~detector.runtimes.torch_eager.TorchDetector` there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from detector.calibration import Decision, calibrated_probabilities
from detector.checkpoint import load_model
from detector.gpu_preprocessing import DeviceBatch, DevicePreprocessor, resolved_device
from detector.model import ExplainedModel
from detector.preprocessing import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageSource
from detector.runtimes.base import Detector

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: the batch sizes a compiled network is run at (a batch is padded to the next one up to max_batch)
COMPILED_BATCHES = (1, 8, 32, 64, 128, 256, 512)


class CudaDetector(Detector):
    """The checkpoint on ``device`` (default ``cuda``) with the device preprocessing beside it."""

    def __init__(
        self,
        path: Path | str,
        *,
        device: str | torch.device = "cuda",
        precision: Precision = "fp16",
        compile: bool = False,
        max_batch: int = 256,
        nvjpeg: bool = True,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device} was asked for, but torch sees no CUDA device")
        self.device = resolved_device(device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
            if precision == "fp32":
                # cuDNN runs fp32 convolutions in TF32 (10 bits of mantissa, fp16's) by default on an A100 and
                # later: fp32 asked for is fp32 given, for this process's convolutions
                torch.backends.cudnn.allow_tf32 = False
        model, metadata = load_model(path)
        if precision != "fp32":
            metadata = replace(metadata, version=f"{metadata.version}-{precision}")
        super().__init__(metadata)
        self.precision = precision
        self.max_batch = max_batch
        self.compiled = compile
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.explained = ExplainedModel(self.model, metadata.classes)
        self._forward = torch.compile(self.model, dynamic=False) if compile else self.model
        self.preprocessor = DevicePreprocessor(metadata.preprocess_config, self.device, nvjpeg=nvjpeg)

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        dtype = _AUTOCAST.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def to_device(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A (N, 3, H, W) batch from the CPU (or already on the device), channels-last on the device."""
        inputs = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(batch, np.float32))
        if inputs.device != self.device:
            if inputs.device.type == "cpu" and self.device.type == "cuda":
                inputs = inputs.pin_memory()
            inputs = inputs.to(self.device, non_blocking=True)
        return inputs.float().contiguous(memory_format=torch.channels_last)

    def _slices(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        return [inputs[first : first + self.max_batch] for first in range(0, len(inputs), self.max_batch)]

    @staticmethod
    def _padded(count: int) -> int:
        """The batch size a compiled network runs ``count`` images at: the next of :data:`COMPILED_BATCHES`."""
        return next((size for size in COMPILED_BATCHES if size >= count), count)

    def warm_up(self) -> list[int]:
        """Run once every batch size a compiled network can be given (slices of 1 to ``max_batch``, padded).

        ``torch.compile`` compiles a size the first time it sees it, which takes tens of seconds: done here, it is
        paid while the model loads (TorchServe's ``startupTimeout``), not inside a request, where it would
        overrun ``responseTimeout`` and have the worker restarted. Returns the sizes run (none when not compiled).
        """
        if not self.compiled:
            return []
        counts = [count for count in (*COMPILED_BATCHES, self.max_batch) if count <= self.max_batch]
        sizes = sorted({self._padded(count) for count in counts})
        size = self.preprocess_config.input_size
        for batch in sizes:
            self.logits_tensor(torch.zeros((batch, 3, size, size), device=self.device))
        return sizes

    def _run(self, inputs: torch.Tensor) -> torch.Tensor:
        """One slice through the (compiled) network; a compiled one sees only the sizes it was compiled for."""
        count = len(inputs)
        if self.compiled:
            padded = self._padded(count)
            if padded > count:
                filler = inputs.new_zeros((padded - count, *inputs.shape[1:]))
                inputs = torch.cat([inputs, filler]).contiguous(memory_format=torch.channels_last)
        return self._forward(inputs)[:count]

    def logits_tensor(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """float32 (N, classes) logits, on the device; the batch is run in slices of at most ``max_batch``."""
        inputs = self.to_device(batch)
        with torch.inference_mode(), self._autocast():
            outputs = [self._run(part) for part in self._slices(inputs)]
        return torch.cat(outputs).float() if outputs else torch.empty((0, len(self.metadata.classes)))

    def logits(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """:meth:`logits_tensor` on the CPU; rows that overflowed the reduced precision are run again in fp32."""
        inputs = self.to_device(batch)
        logits = self.logits_tensor(inputs)
        with torch.inference_mode():
            overflowed = self._overflowed(logits)
            if overflowed is not None:
                logits[overflowed] = self._in_fp32(inputs[overflowed])[0]
        return logits.cpu().numpy()

    def logits_and_cam(self, batch: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        inputs = self.to_device(batch)
        with torch.inference_mode():
            with self._autocast():
                parts = [self.explained(part) for part in self._slices(inputs)]
            logits = torch.cat([logit for logit, _ in parts]).float()
            cams = torch.cat([cam for _, cam in parts]).float()
            overflowed = self._overflowed(logits)
            if overflowed is not None:
                logits[overflowed], cams[overflowed] = self._in_fp32(inputs[overflowed])
        return logits.cpu().numpy(), cams.cpu().numpy()

    def _overflowed(self, logits: torch.Tensor) -> torch.Tensor | None:
        """The rows whose logits are not finite (fp16 reaches only 65,504), or None when every row is."""
        if self.precision == "fp32":
            return None
        rows = ~torch.isfinite(logits).all(dim=1)
        return rows if bool(rows.any()) else None

    def _in_fp32(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows run again in full precision, eagerly (a rare fallback): their logits and class activation maps."""
        logits, cams = self.explained(inputs)
        return logits.float(), cams.float()

    def decide_batch(self, batch: DeviceBatch) -> list[Decision | ImageDecodeError | OSError]:
        """Per position of a device batch: its decision, or the reason it has none."""
        answers: dict[int, Decision] = {}
        if batch.inputs is not None:
            probabilities = calibrated_probabilities(self.logits(batch.inputs), self.metadata.temperature)
            answers = dict(zip(batch.positions, self._decide(probabilities), strict=True))
        return [answers[i] if i in answers else batch.errors[i] for i in range(batch.size)]

    def classify_files(
        self, sources: Sequence[ImageSource], *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> list[Decision | ImageDecodeError | OSError]:
        """Files in, one answer each: decoded, resized and normalised on the device, then one batched pass."""
        return self.decide_batch(self.preprocessor(sources, max_pixels=max_pixels))
