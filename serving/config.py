"""The web app's settings, in one typed place: defaults, then ``DETECTOR_SERVE_<NAME>`` variables, then flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from detector.preprocessing import DEFAULT_MAX_PIXELS
from detector.settings import ToolSettings, tool_config


class ServeSettings(ToolSettings):
    """``python -m serving``: the FastAPI app with ``/predict`` and the upload page."""

    model_config = tool_config("DETECTOR_SERVE_", "python -m serving")

    backend: Literal["onnx", "torchserve"] = Field(
        "onnx",
        description="onnx: the .onnx in this process (engine: OpenVINO or ONNX Runtime; no Java); torchserve: "
        "forward to a TorchServe server",
    )
    model: Path | None = Field(
        None,
        description="the .onnx model for the onnx backend (make export writes it); a .pt checkpoint: the torch engine",
    )
    # Measured with `make microbench` and `make bench` (docs/performance.md): OpenVINO fp32 gives ONNX Runtime's
    # answers (100 % of the default model's test labels, P(ai) within 1.2e-6) 1.3x faster per forward pass.
    engine: Literal["auto", "onnxruntime", "openvino", "torch"] = Field(
        "auto",
        description="what runs the model in the onnx backend: openvino (CPU), onnxruntime, torch (a .pt checkpoint "
        "on --device, a GPU: detector/runtimes/torch_cuda.py), or auto: torch for a .pt, else openvino unless ONNX "
        "Runtime has a CUDA GPU (onnxruntime-gpu) or openvino is not installed",
    )
    precision: Literal["f32", "bf16", "fp16"] = Field(
        "f32",
        description="openvino and torch engines: f32, or bf16 where the CPU (or GPU) has it (faster; answers move a "
        "little, and the model version says -bf16); fp16: the torch engine's float16 autocast",
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
        description="torch engine: cuda[:N], cpu, or auto (the GPU when torch sees one)",
    )
    # Defaults measured with `make bench` (docs/performance.md): one intra-op thread per request and as many
    # requests at once as there are cores spend a third less CPU per image than two threads per forward pass.
    threads: int | None = Field(1, ge=1, description="engine threads per forward pass (more helps a lone request only)")
    inference_concurrency: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="requests preprocessed and run at the same time (default: one per core); more only queue",
    )
    torchserve_url: str = Field("http://127.0.0.1:8080", description="TorchServe inference API")
    torchserve_model: str = Field("detector", description="model name registered in TorchServe")
    torchserve_token: SecretStr | None = Field(None, description="TorchServe inference token")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 to be reachable from others)")
    port: int = Field(8000, ge=0, le=65535)
    max_file_bytes: int = Field(20 * 1024 * 1024, ge=1, description="largest accepted file, in bytes (413 beyond)")
    max_files: int = Field(16, ge=1, description="most files in one request")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="largest accepted width x height (413 beyond)")
    request_timeout: float = Field(30.0, gt=0, description="seconds before a prediction gives up (504)")
    # A client that opens a connection and sends nothing, or half a request, holds a connection and its
    # buffers for as long as the server lets it (uvicorn has no such timeout of its own): both are bounded.
    header_timeout: float = Field(
        10.0, gt=0, description="seconds a connection has to send a request's line and headers (closed beyond)"
    )
    body_timeout: float = Field(
        60.0, gt=0, description="seconds a request's body has to arrive once its headers have (408 beyond)"
    )
    # Uploads are spooled to anonymous temporary files while they arrive, then read into memory to be
    # decoded: this budget bounds the bytes all requests hold in memory together (measured: docs/performance.md).
    max_upload_memory: int = Field(
        256 * 1024 * 1024,
        ge=1,
        description="upload bytes held in memory by all requests at once; a request that would go over it gets "
        "503 with Retry-After (a request alone is always taken, whatever its size)",
    )
    retry_after: int = Field(2, ge=1, description="seconds a busy server asks clients to wait (Retry-After on a 503)")

    @property
    def max_request_bytes(self) -> int:
        """All files at their largest, plus room for the multipart framing."""
        return self.max_files * self.max_file_bytes + 64 * 1024
