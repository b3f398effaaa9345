"""Where predictions come from: in-process ONNX Runtime, or a TorchServe server.

Both take the raw bytes of each file and return, per file, a :class:`Decision` or an
:class:`ImageDecodeError`, so one bad file never spoils the others.  Blocking work runs in a
worker thread, off the event loop.  When the backend itself cannot answer (TorchServe down,
refusing the token, not knowing the model) no file is to blame: :class:`BackendUnavailable` refuses
the whole request with a 502/503/504 and one sentence, and ``/readyz`` reports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import anyio
import httpx
import numpy as np
import onnxruntime as ort

from detector.calibration import Decision
from detector.consistency import check_consistency
from detector.heatmap import heatmap_data_uri, overlay_size
from detector.preprocessing import STATUS_FOR_REASON, DecodedImage, ImageDecodeError, decode_image, image_to_array
from detector.runtimes import onnx_engine
from detector.runtimes.base import Detector
from detector.runtimes.onnx_runtime import INPUT_NAME, OUTPUT_NAME, OnnxDetector
from serving.config import ServeSettings
from serving.memory import release_free_memory


class BackendUnavailable(Exception):
    """The backend cannot answer any file now: 503 unreachable or busy, 502 it refused us, 504 too slow."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Prediction:
    """One file's answer (``decision``) or refusal (``error``), and the milliseconds it took."""

    decision: Decision | None
    error: ImageDecodeError | None
    time_ms: float
    #: the provenance fields (verdict, verdict_source, verdict_reason, evidence) when the backend already
    #: weighed them (TorchServe with ``handler.evidence`` on), so the web app does not read the file again
    provenance: dict[str, Any] | None = None
    #: the class activation map as a transparent PNG ``data:`` URI of the image's aspect ratio (``explain``)
    heatmap: str | None = None
    #: the file as the model's preprocessing decoded it, handed on to the provenance checks that read pixels
    #: so that they need not decode it again; only where they can use it (``OnnxBackend.keep_decoded``)
    decoded: DecodedImage | None = None


#: the answer fields of provenance.Verdict.to_dict(), as TorchServe's handler adds them
PROVENANCE_FIELDS = ("verdict", "verdict_source", "verdict_reason", "evidence")


class Backend(Protocol):
    version: str
    #: P(ai) from which an image is called ai, when the backend knows it
    threshold: float | None
    #: P(ai) up to which an image is called real (unsure between the two), when the backend knows it
    real_threshold: float | None
    #: the options of :meth:`predict` this backend can honour (:data:`FEATURES`); a request asking for
    #: another is refused before anything is read
    features: frozenset[str]

    async def predict(self, files: list[bytes], **options: bool) -> list[Prediction]:
        """Each file's answer; ``options`` are names from :attr:`features` set to True (explain, consistency)."""

    async def check(self) -> None:
        """Return when the backend can answer now; raise :class:`BackendUnavailable` saying why not."""

    def release_memory(self) -> None:
        """Hand memory that a burst of large requests left behind back to the system (run in a thread)."""

    async def close(self) -> None: ...


#: The most images in one forward pass. ONNX Runtime's CPU memory arena grows to the largest batch it
#: has run and keeps that memory for the life of the session: one request of 16 files run as one batch
#: left the web app ~340 MB larger for good, a batch of 8 ~150 MB. Larger batches gain nothing per image on
#: a CPU (make microbench, ONNX Runtime fp32 on one core: 76.6 images/s at batch 8, 72.5 at 32), and asking
#: the arena to shrink after each run instead cost 10-30 % per image (docs/performance.md): it is asked
#: only once a burst is over (:meth:`OnnxBackend.release_memory`).
MAX_FORWARD_BATCH = 8

#: ``explain``: a heatmap per answered file; ``consistency``: the verdict checked against re-saved variants
FEATURES = frozenset({"explain", "consistency"})


def engine_name(settings: ServeSettings) -> str:
    """``settings.engine``, with ``auto`` resolved: torch for a checkpoint; for an ``.onnx`` OpenVINO on a CPU,
    ONNX Runtime where it has a CUDA GPU."""
    if settings.engine == "torch" or (
        settings.engine == "auto" and settings.model is not None and settings.model.suffix == ".pt"
    ):
        return "torch"
    return onnx_engine(settings.engine)


def open_engine(model: Path, settings: ServeSettings) -> Detector:
    """The model in the engine the settings name: ONNX Runtime, OpenVINO or torch (a ``.pt``), in their precision."""
    engine = engine_name(settings)
    if engine == "torch":
        # the checkpoint on the GPU in large batches (detector/runtimes/torch_cuda.py); uploads are still decoded
        # with Pillow here: nvJPEG pays with the large batches that TorchServe and the scanner make
        from detector.runtimes.torch_cuda import CudaDetector

        device = settings.device if settings.device != "auto" else ("cuda" if _torch_sees_cuda() else "cpu")
        precision = "fp32" if settings.precision == "f32" else settings.precision
        return CudaDetector(model, device=device, precision=precision)  # type: ignore[arg-type]
    if engine == "openvino":
        from detector.runtimes.openvino_runtime import OpenVinoDetector

        # one OpenVINO stream per request run at once, each on the threads a forward pass gets
        streams = settings.inference_concurrency
        return OpenVinoDetector(model, threads=settings.threads, precision=settings.precision, streams=streams)
    return OnnxDetector(model, threads=settings.threads)


def _torch_sees_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class OnnxBackend:
    """The exported model in this process: decode and resize each file, then one forward pass for all."""

    def __init__(self, settings: ServeSettings) -> None:
        if settings.model is None or not settings.model.is_file():
            raise FileNotFoundError(
                f"no ONNX model at {settings.model}: train a model (make train) and export it (make export), "
                "or set DETECTOR_SERVE_MODEL"
            )
        self.detector = open_engine(settings.model, settings)
        self.version = self.detector.version
        self.threshold = self.detector.metadata.threshold
        self.real_threshold = self.detector.metadata.real_threshold
        # heatmaps need the map as a second output of the .onnx (exported since heatmaps exist)
        self.features = FEATURES if getattr(self.detector, "has_cam", True) else FEATURES - {"explain"}
        self.max_pixels = settings.max_pixels
        self.limiter = anyio.CapacityLimiter(settings.inference_concurrency)
        self.shrink_arena = ort.RunOptions()
        self.shrink_arena.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        #: which decoded files to hand on with their predictions (:attr:`Prediction.decoded`) rather than drop
        #: once resized: the web app keeps those its provenance checks would read (provenance.reads_pixels)
        self.keep_decoded: Callable[[DecodedImage], bool] = _keep_none

    async def predict(
        self, files: list[bytes], *, explain: bool = False, consistency: bool = False
    ) -> list[Prediction]:
        run = partial(self._predict, files, explain=explain, consistency=consistency)
        return await anyio.to_thread.run_sync(run, limiter=self.limiter)

    def _predict(self, files: list[bytes], *, explain: bool = False, consistency: bool = False) -> list[Prediction]:
        config = self.detector.preprocess_config
        arrays: dict[int, np.ndarray] = {}
        sizes: dict[int, tuple[int, int]] = {}
        kept: dict[int, DecodedImage] = {}
        spent: list[float] = []
        errors: dict[int, ImageDecodeError] = {}
        for index, data in enumerate(files):
            started = time.perf_counter()
            try:
                # Detector.preprocess in two steps, to keep the decoded size the heatmap is drawn to, and the
                # decoded image itself for the provenance checks where they read the same pixels
                decoded = decode_image(data, draft_size=config.input_size, max_pixels=self.max_pixels)
                image = decoded.model_image
                sizes[index] = image.size
                arrays[index] = image_to_array(image, config)
                if self.keep_decoded(decoded):
                    kept[index] = decoded
            except ImageDecodeError as error:
                errors[index] = error
            spent.append(time.perf_counter() - started)
        decisions: dict[int, Decision] = {}
        cams: dict[int, np.ndarray] = {}
        inference = 0.0
        if arrays:
            started = time.perf_counter()
            positions = list(arrays)
            for first in range(0, len(positions), MAX_FORWARD_BATCH):
                chunk = positions[first : first + MAX_FORWARD_BATCH]
                batch = np.stack([arrays[i] for i in chunk])
                if explain:  # one forward pass gives both
                    answers, maps = self.detector.explain(batch)
                    cams.update(zip(chunk, maps, strict=True))
                else:
                    answers = self.detector.classify(batch)
                decisions.update(zip(chunk, answers, strict=True))
            inference = time.perf_counter() - started
        heatmaps: dict[int, str] = {}
        for index in decisions:
            started = time.perf_counter()
            if consistency:
                decisions[index] = check_consistency(
                    self.detector, files[index], decisions[index], max_pixels=self.max_pixels
                )
            if index in cams:
                heatmaps[index] = heatmap_data_uri(cams[index], overlay_size(sizes[index]))
            spent[index] += time.perf_counter() - started
        return [
            Prediction(
                decision=decisions.get(i),
                error=errors.get(i),
                # a file's own decoding (and checks), plus the forward pass it shared with the others
                time_ms=round(1000 * (spent[i] + (inference if i in decisions else 0.0)), 2),
                heatmap=heatmaps.get(i),
                decoded=kept.get(i),
            )
            for i in range(len(files))
        ]

    async def check(self) -> None:
        return None  # the model is in this process: loaded means able to answer

    def release_memory(self) -> None:
        """One forward pass of one blank image that ends by shrinking the arena, then glibc's trim.

        ONNX Runtime shrinks its arena only at the end of a run that asks for it; one image costs a few
        milliseconds, and this runs only after the last large upload of a burst has been answered.
        """
        if isinstance(self.detector, OnnxDetector):
            size = self.detector.preprocess_config.input_size
            blank = {INPUT_NAME: np.zeros((1, 3, size, size), dtype=np.float32)}
            self.detector.session.run([OUTPUT_NAME], blank, self.shrink_arena)
        elif hasattr(self.detector, "release_memory"):  # OpenVINO: its intermediate buffers
            self.detector.release_memory()
        release_free_memory()

    async def close(self) -> None:
        return None


def _keep_none(decoded: DecodedImage) -> bool:
    return False


class TorchServeBackend:
    """Forward each file to TorchServe's ``/predictions/<model>``; TorchServe batches across requests."""

    #: the handler's thresholds are not known here
    real_threshold: float | None = None
    #: heatmaps come from the handler through TorchServe's explanations API; the consistency check is
    #: switched on for the whole model in its model config (``handler.consistency``), not per request
    features: frozenset[str] = frozenset({"explain"})

    def __init__(self, settings: ServeSettings) -> None:
        headers = {}
        if settings.torchserve_token is not None:
            headers["Authorization"] = f"Bearer {settings.torchserve_token.get_secret_value()}"
        self.client = httpx.AsyncClient(
            base_url=settings.torchserve_url, headers=headers, timeout=settings.request_timeout
        )
        self.url = settings.torchserve_url
        self.model = settings.torchserve_model
        self.path = f"/predictions/{settings.torchserve_model}"
        self.explain_path = f"/explanations/{settings.torchserve_model}"
        self.version = f"torchserve:{settings.torchserve_model}"
        self.threshold = None

    async def predict(self, files: list[bytes], explain: bool = False) -> list[Prediction]:
        results: list[Prediction | None] = [None] * len(files)
        failures: list[BackendUnavailable] = []
        path = self.explain_path if explain else self.path

        async def one(index: int, data: bytes) -> None:
            started = time.perf_counter()
            try:
                response = await self._post(data, path=path)
                results[index] = self._prediction(response, round(1000 * (time.perf_counter() - started), 2))
            except BackendUnavailable as failure:
                failures.append(failure)
                group.cancel_scope.cancel()  # the other files would fail the same way

        async with anyio.create_task_group() as group:
            for index, data in enumerate(files):
                group.start_soon(one, index, data)
        if failures:
            raise failures[0]
        return [r for r in results if r is not None]

    async def check(self) -> None:
        """An empty body through the whole path: TorchServe, the token, the model, a worker, the handler.

        The handler refuses it (``empty``) without running the model; any other answer means a file
        sent now would not be answered either. ``/ping`` would miss an unknown model or a stale token.
        """
        response = await self._post(b"", timeout=min(5.0, self.client.timeout.read or 5.0))
        if response.status_code == 200:
            return
        if _handler_refusal(_json(response)) is None:
            raise self._failure(response)

    async def _post(self, data: bytes, timeout: float | None = None, path: str | None = None) -> httpx.Response:
        path = path or self.path
        try:
            if timeout is None:
                return await self.client.post(path, content=data)
            return await self.client.post(path, content=data, timeout=timeout)
        except httpx.TimeoutException:
            raise BackendUnavailable(504, "backend_timeout", "TorchServe gave no answer in time") from None
        except httpx.TransportError:
            raise BackendUnavailable(
                503, "backend_unavailable", f"TorchServe at {self.url} cannot be reached"
            ) from None

    def _prediction(self, response: httpx.Response, elapsed: float) -> Prediction:
        body = _json(response)
        if response.status_code == 200 and isinstance(body, dict) and "label" in body:
            self.version = body.get("model_version", self.version)
            # the handler's verdict as it gave it: label (ai / real / unsure), p_ai, and why when it says
            decision = Decision(body["label"], float(body["p_ai"]), body["probabilities"], body.get("reason"))
            weighed = {key: body[key] for key in PROVENANCE_FIELDS if key in body}
            return Prediction(
                decision, None, elapsed, weighed if "verdict" in weighed else None, heatmap=body.get("heatmap")
            )
        refusal = _handler_refusal(body)
        if refusal is not None:
            return Prediction(None, refusal, elapsed)
        if response.status_code == 413:
            # TorchServe's frontend refuses bodies over its max_request_size itself, with an empty body
            too_large = ImageDecodeError("too_large", "the file is larger than TorchServe accepts (max_request_size)")
            return Prediction(None, too_large, elapsed)
        raise self._failure(response)

    def _failure(self, response: httpx.Response) -> BackendUnavailable:
        """TorchServe's own refusal (not the handler's), as one sentence about the backend."""
        body = _json(response)
        kind = body.get("type", "") if isinstance(body, dict) else ""
        status = response.status_code
        if kind == "InvalidKeyException" or status in (401, 403):
            return BackendUnavailable(502, "backend_refused", "TorchServe refused the web app's inference token")
        if status == 404:
            return BackendUnavailable(502, "backend_refused", f"TorchServe serves no model named {self.model!r}")
        if status == 503:
            return BackendUnavailable(503, "backend_unavailable", "TorchServe has no worker free for the model")
        return BackendUnavailable(502, "backend_error", f"TorchServe answered {status} {kind}".rstrip())

    def release_memory(self) -> None:
        release_free_memory()  # the model's memory is TorchServe's; here only the uploads were held

    async def close(self) -> None:
        await self.client.aclose()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _handler_refusal(body: Any) -> ImageDecodeError | None:
    """The handler's refusal of one file (``{"error": {"code", "message", "status"}}``), if this is one."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code") in STATUS_FOR_REASON:
        return ImageDecodeError(str(error["code"]), str(error.get("message", "")))
    return None


def create_backend(settings: ServeSettings) -> Backend:
    return OnnxBackend(settings) if settings.backend == "onnx" else TorchServeBackend(settings)
