"""Where predictions come from: in-process ONNX Runtime, or a TorchServe server.

Both take the raw bytes of each file and return, per file, a :class:`Decision` or an
:class:`ImageDecodeError`, so one bad file never spoils the others.  Blocking work runs in a
worker thread, off the event loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx
import numpy as np

from detector.calibration import Decision
from detector.onnx_runtime import OnnxDetector
from detector.preprocessing import ImageDecodeError
from serving.config import ServeSettings


@dataclass
class Prediction:
    """One file's answer (``decision``) or refusal (``error``), and the milliseconds it took."""

    decision: Decision | None
    error: ImageDecodeError | None
    time_ms: float
    #: the provenance fields (verdict, verdict_source, verdict_reason, evidence) when the backend already
    #: weighed them (TorchServe with ``handler.evidence`` on), so the web app does not read the file again
    provenance: dict[str, Any] | None = None


#: the answer fields of provenance.Verdict.to_dict(), as TorchServe's handler adds them
PROVENANCE_FIELDS = ("verdict", "verdict_source", "verdict_reason", "evidence")


class Backend(Protocol):
    version: str
    #: P(ai) from which an image is called ai, when the backend knows it
    threshold: float | None

    async def predict(self, files: list[bytes]) -> list[Prediction]: ...

    async def close(self) -> None: ...


class OnnxBackend:
    """The exported model in this process: decode and resize each file, then one forward pass for all."""

    def __init__(self, settings: ServeSettings) -> None:
        if settings.model is None or not settings.model.is_file():
            raise FileNotFoundError(
                f"no ONNX model at {settings.model}: train a model (make train) and export it (make export), "
                "or set DETECTOR_SERVE_MODEL"
            )
        self.detector = OnnxDetector(settings.model, threads=settings.threads)
        self.version = self.detector.version
        self.threshold = self.detector.metadata.threshold
        self.max_pixels = settings.max_pixels
        self.limiter = anyio.CapacityLimiter(settings.inference_concurrency)

    async def predict(self, files: list[bytes]) -> list[Prediction]:
        return await anyio.to_thread.run_sync(self._predict, files, limiter=self.limiter)

    def _predict(self, files: list[bytes]) -> list[Prediction]:
        arrays: dict[int, np.ndarray] = {}
        spent: list[float] = []
        errors: dict[int, ImageDecodeError] = {}
        for index, data in enumerate(files):
            started = time.perf_counter()
            try:
                arrays[index] = self.detector.preprocess(data, max_pixels=self.max_pixels)
            except ImageDecodeError as error:
                errors[index] = error
            spent.append(time.perf_counter() - started)
        decisions: dict[int, Decision] = {}
        inference = 0.0
        if arrays:
            started = time.perf_counter()
            batch = np.stack(list(arrays.values()))
            decisions = dict(zip(arrays, self.detector.classify(batch), strict=True))
            inference = time.perf_counter() - started
        return [
            Prediction(
                decision=decisions.get(i),
                error=errors.get(i),
                # a file's own decoding, plus the forward pass it shared with the others
                time_ms=round(1000 * (spent[i] + (inference if i in decisions else 0.0)), 2),
            )
            for i in range(len(files))
        ]

    async def close(self) -> None:
        return None


class TorchServeBackend:
    """Forward each file to TorchServe's ``/predictions/<model>``; TorchServe batches across requests."""

    def __init__(self, settings: ServeSettings) -> None:
        headers = {}
        if settings.torchserve_token is not None:
            headers["Authorization"] = f"Bearer {settings.torchserve_token.get_secret_value()}"
        self.client = httpx.AsyncClient(
            base_url=settings.torchserve_url, headers=headers, timeout=settings.request_timeout
        )
        self.path = f"/predictions/{settings.torchserve_model}"
        self.version = f"torchserve:{settings.torchserve_model}"
        self.threshold = None

    async def predict(self, files: list[bytes]) -> list[Prediction]:
        results: list[Prediction | None] = [None] * len(files)

        async def one(index: int, data: bytes) -> None:
            started = time.perf_counter()
            response = await self.client.post(self.path, content=data)
            elapsed = round(1000 * (time.perf_counter() - started), 2)
            body = response.json()
            if response.status_code == 200 and "label" in body:
                self.version = body.get("model_version", self.version)
                decision = Decision(body["label"], float(body["confidence"]), body["probabilities"])
                weighed = {key: body[key] for key in PROVENANCE_FIELDS if key in body}
                results[index] = Prediction(decision, None, elapsed, weighed if "verdict" in weighed else None)
            else:
                reason = body.get("code", "not_an_image") if isinstance(body, dict) else "not_an_image"
                message = body.get("message", response.text) if isinstance(body, dict) else response.text
                results[index] = Prediction(None, ImageDecodeError(reason, message), elapsed)

        async with anyio.create_task_group() as group:
            for index, data in enumerate(files):
                group.start_soon(one, index, data)
        return [r for r in results if r is not None]

    async def close(self) -> None:
        await self.client.aclose()


def create_backend(settings: ServeSettings) -> Backend:
    return OnnxBackend(settings) if settings.backend == "onnx" else TorchServeBackend(settings)
