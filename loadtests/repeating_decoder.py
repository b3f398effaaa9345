"""nvJPEG's way with colour, on the CPU: what the GPU path does with it, measured where there is no GPU.

``torchvision.io.decode_jpeg(device="cuda")`` (nvJPEG) repeats each colour sample of a 4:2:0 or 4:2:2 JPEG
over its block, where libjpeg-turbo (Pillow, the CPU path; ``decode_jpeg`` on the CPU) interpolates it
(sglang-project/sglang#34163). libjpeg-turbo does the same as nvJPEG when asked for its fast upsampling,
which simplejpeg exposes (``fastupsample=True``): :func:`decode_repeating` is ``decode_jpeg``'s signature
over that, and :func:`repeating_colour` puts it in the device preprocessing's place, for
``make bench-gpu ARGS="--device cpu --repeat-colour ..."`` and ``tests/test_gpu.py``. simplejpeg is a
test requirement (requirements-dev.txt), imported only here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from detector import gpu_preprocessing


def _decode_one(encoded: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    import simplejpeg

    pixels = simplejpeg.decode_jpeg(encoded.numpy().tobytes(), colorspace="RGB", fastupsample=True)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).to(device)


def decode_repeating(data: Any, mode: Any = None, device: str | torch.device = "cpu") -> Any:
    """``torchvision.io.decode_jpeg`` (one encoded tensor, or a list), colour repeated over its blocks, RGB."""
    if isinstance(data, list):
        return [_decode_one(encoded, device) for encoded in data]
    return _decode_one(data, device)


@contextmanager
def repeating_colour(*, interpolated: bool = True) -> Iterator[None]:
    """Within it, the device preprocessing's decoder repeats colour as nvJPEG does (preprocessors made inside).

    ``interpolated=False`` also keeps the preprocessing from interpolating it back
    (:attr:`~detector.gpu_preprocessing.DevicePreprocessor.replicated` left empty): the GPU path before it did.
    """
    originals = gpu_preprocessing.decode_jpeg, gpu_preprocessing.replicated_samplings
    gpu_preprocessing.decode_jpeg = decode_repeating  # type: ignore[assignment]
    if not interpolated:
        gpu_preprocessing.replicated_samplings = lambda decode, tolerance=2: frozenset()  # type: ignore[assignment]
    try:
        yield
    finally:
        gpu_preprocessing.decode_jpeg, gpu_preprocessing.replicated_samplings = originals
