"""TorchServe handler for the real-vs-AI detector: image bytes in, one JSON answer per image out.

TorchServe hands the handler a whole batch (requests it gathered for up to ``maxBatchDelay`` ms, at
most ``batchSize`` of them). Each image is decoded by the core's preprocessing
(:mod:`detector.preprocessing`) with the parameters read from the model file itself, the good ones
go through the model in **one** forward pass, and the calibration temperature and the two decision
thresholds from the same metadata turn logits into answers (:mod:`detector.calibration`)::

    {"label": "unsure", "p_ai": 0.38, "summary": "P(AI) 38 %: unsure",
     "probabilities": {"ai": 0.38, "real": 0.62},
     "model_version": "...", "archive_version": "1.0", "runtime": "onnxruntime"}

``label`` is ``ai``, ``real`` or ``unsure``; ``p_ai`` is the one number that goes with it, on every
surface. ``reason`` is added when something other than the thresholds decided the label (the
consistency check, ``consistency: true`` in the model config, turns a verdict that a re-encoded copy
of the image flips into ``unsure`` and says why).

TorchServe's explanations API (``POST /explanations/{model}``) answers the same, plus ``heatmap``: the
class activation map as a transparent PNG ``data:`` URI (red: evidence of ``ai``, cyan: of ``real``)
to lay over the image (:mod:`detector.heatmap`); TorchServe routes those requests to
:meth:`DetectorHandler.explain_handle`.

A file that cannot be decoded gets its own answer ``{"error": {"code": "not_an_image", "message": ...,
"status": 415}}`` (the web app's one error shape) with that HTTP status
(``context.set_response_status``); the rest of the batch is answered as usual.

Two model formats sit behind the same contract, chosen by the archive's serialized file: an
exported ``.onnx`` run by ONNX Runtime inside the worker (the default archive: about three times
faster than eager on a CPU, docs/performance.md) and a ``.pt`` checkpoint run by eager PyTorch.

On a GPU (``torchserve/model-config-gpu.yaml``, docs/torchserve.md) the worker runs on the GPU TorchServe
assigned it (``context.system_properties["gpu_id"]``): a ``.pt`` checkpoint in
:class:`detector.runtimes.torch_cuda.CudaDetector` (fp16 autocast, channels-last, batches up to 256), its
JPEGs decoded together by nvJPEG on the same GPU after threads have read and checked them
(:mod:`detector.gpu_preprocessing`); an ``.onnx`` on ONNX Runtime's CUDA provider where onnxruntime-gpu
is installed.

TorchServe loads this file as a top-level module from the archive, next to the ``detector/``
package that ``handlers.archive`` packs beside it. The module-level :func:`handle` is the entry
point (TorchServe's function entry point), so the module may define more than one class.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from ts.metrics.dimension import Dimension
from ts.torch_handler.base_handler import BaseHandler

from detector.calibration import Decision, calibrated_probabilities, decide
from detector.consistency import check_consistency
from detector.heatmap import heatmap_data_uri
from detector.preprocessing import DEFAULT_MAX_PIXELS, DecodedImage, ImageDecodeError, preprocess_decoded
from detector.runtimes import Detector, open_detector

log = logging.getLogger(__name__)

#: custom metrics, declared with these dimensions in torchserve/metrics.yaml (Prometheus needs them there)
LABEL_METRIC = "PredictedLabels"
BATCH_METRIC = "HandlerBatches"
REJECTED_METRIC = "RejectedImages"


class HandlerSettings(BaseModel):
    """The ``handler:`` section of the archive's model-config YAML (torchserve/model-config.yaml)."""

    model_config = ConfigDict(extra="forbid")

    threads: int | None = Field(None, ge=1, description="intra-op threads per worker (None: the runtime decides)")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="largest accepted width x height (413 beyond)")
    evidence: bool = Field(
        False,
        description="add provenance evidence and the combined verdict to each answer (the watermark check reads "
        "the model's decode of an image where it is at the scale the check reads, else decodes the image again; "
        "the provenance package is in the archive)",
    )
    consistency: bool = Field(
        False,
        description="score each image again re-saved as JPEG q75, halved and centre-cropped, and answer unsure "
        "(with a reason) when one of them flips the verdict (three more forward passes and a full-size decode)",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="auto: the GPU TorchServe assigned the worker (gpu_id) when it assigned one and the runtime can "
        "use it, else the CPU; cpu: never a GPU; cuda: gpu_id's GPU (the first without one), or an error",
    )
    precision: Literal["fp16", "bf16", "fp32"] = Field("fp16", description="on a GPU: fp16 or bf16 autocast, or fp32")
    compile: bool = Field(False, description="on a GPU: torch.compile the network (a minute of compiling at start)")
    decode_threads: int = Field(
        8, ge=1, description="on a GPU: threads reading and checking a batch's files before nvJPEG decodes them"
    )


def worker_device(setting: str, gpu_id: int | None, model_file: Path) -> str | None:
    """``cuda:N`` for the GPU this worker runs on (``handler.device`` and TorchServe's ``gpu_id``), None for the CPU.

    ``auto`` takes the assigned GPU only where the model's runtime can use it (torch with CUDA for a ``.pt``,
    onnxruntime-gpu for an ``.onnx``), so the CPU archive keeps working on a machine that has a GPU.
    """
    if setting == "cpu" or (setting == "auto" and gpu_id is None):
        return None
    device = f"cuda:{gpu_id or 0}"
    if setting == "cuda":
        return device
    if model_file.suffix == ".onnx":
        from detector.runtimes.onnx_runtime import available_providers

        return device if "CUDAExecutionProvider" in available_providers() else None
    import torch

    return device if torch.cuda.is_available() else None


@dataclass
class PreparedBatch:
    """What preprocessing made of a batch: the decodable images stacked, and each refusal by position."""

    size: int
    #: positions in the batch of the rows of ``inputs``
    positions: list[int] = field(default_factory=list)
    #: (N, 3, H, W): a NumPy array, or on the GPU path a tensor already on the GPU
    inputs: Any = None
    errors: dict[int, ImageDecodeError] = field(default_factory=dict)
    #: each decodable image's bytes by position, kept only when evidence is read or consistency checked
    files: dict[int, bytes] = field(default_factory=dict)
    #: the model's decode of an image by position, kept only where the evidence reads those pixels
    #: (provenance.reads_pixels), until its answer is made; the watermark check then need not decode it again
    decoded: dict[int, DecodedImage] = field(default_factory=dict)


class DetectorHandler(BaseHandler):
    """BaseHandler with the core's preprocessing, runtimes and calibration in place of torchvision's."""

    def __init__(self) -> None:
        super().__init__()
        self.detector: Detector | None = None
        self.settings = HandlerSettings()
        self.runtime = ""
        self.archive_version = ""
        #: reads and checks each batch's files on the GPU path
        self.readers: ThreadPoolExecutor | None = None

    def initialize(self, context: Any) -> None:
        """Load the archive's model file; its metadata says how to preprocess and calibrate.

        BaseHandler.initialize is not called: it would load the file as TorchScript or a pickled
        module, while ours are a weights-only checkpoint or an ONNX model.
        """
        self.context = context
        self.manifest = context.manifest
        model_dir = Path(context.system_properties["model_dir"])
        model_file = model_dir / self.manifest["model"]["serializedFile"]
        self.settings = HandlerSettings.model_validate((context.model_yaml_config or {}).get("handler") or {})
        settings = self.settings
        device = worker_device(settings.device, context.system_properties.get("gpu_id"), model_file)
        self.detector = open_detector(
            model_file, threads=settings.threads, device=device, precision=settings.precision, compile=settings.compile
        )
        self.runtime = ("onnxruntime" if model_file.suffix == ".onnx" else "torch") + ("-cuda" if device else "")
        warm_up = getattr(self.detector, "warm_up", None)
        compiled = warm_up() if warm_up is not None else []  # torch.compile's compiling: now, not within a request
        if compiled:
            log.info("torch.compile compiled the network for batches of %s", ", ".join(map(str, compiled)))
        preprocessor = getattr(self.detector, "preprocessor", None)
        if preprocessor is not None:
            self.readers = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="read")
            log.info("the device decoder repeats colour for subsamplings %s", sorted(preprocessor.replicated))
        self.archive_version = str(self.manifest["model"].get("modelVersion", ""))
        self.initialized = True
        log.info(
            "loaded %s (model %s, archive version %s) with %s on %s; input size %d, threshold %.4f",
            model_file.name,
            self.detector.version,
            self.archive_version,
            self.runtime,
            device or "the CPU",
            self.detector.preprocess_config.input_size,
            self.detector.metadata.threshold,
        )

    def preprocess(self, data: list[dict[str, Any]]) -> PreparedBatch:  # type: ignore[override]
        """Decode every request's image with the core's preprocessing; keep each failure by position."""
        assert self.detector is not None
        if self.readers is not None:
            return self._preprocess_on_device(data)
        prepared = PreparedBatch(size=len(data))
        arrays = []
        for position, row in enumerate(data):
            try:
                image = _image_bytes(row)
                if self.settings.evidence:
                    # the core's preprocessing in its two steps, to hand the decode on to the evidence
                    array, decoded = preprocess_decoded(
                        image, self.detector.preprocess_config, max_pixels=self.settings.max_pixels
                    )
                    if _evidence_reads(decoded):
                        prepared.decoded[position] = decoded
                else:
                    array = self.detector.preprocess(image, max_pixels=self.settings.max_pixels)
                arrays.append(array)
                prepared.positions.append(position)
                if self.settings.evidence or self.settings.consistency:
                    prepared.files[position] = image
            except ImageDecodeError as error:
                prepared.errors[position] = error
        if arrays:
            prepared.inputs = np.stack(arrays)
        return prepared

    def _preprocess_on_device(self, data: list[dict[str, Any]]) -> PreparedBatch:
        """The GPU path: each file read and checked from its header in a thread, then all decoded on the GPU."""
        assert self.detector is not None and self.readers is not None
        device = self.detector.preprocessor  # type: ignore[attr-defined]
        prepared = PreparedBatch(size=len(data))
        files: dict[int, bytes] = {}
        for position, row in enumerate(data):
            try:
                files[position] = _image_bytes(row)
            except ImageDecodeError as error:
                prepared.errors[position] = error
        limit = self.settings.max_pixels
        staged = list(self.readers.map(lambda image: device.stage(image, max_pixels=limit), files.values()))
        batch = device.batch(staged, max_pixels=limit)
        positions = list(files)  # the batch's rows and refusals are numbered among the files
        prepared.positions = [positions[row] for row in batch.positions]
        prepared.inputs = batch.inputs
        prepared.errors.update({positions[row]: error for row, error in batch.errors.items()})
        if self.settings.evidence or self.settings.consistency:
            prepared.files = {position: files[position] for position in prepared.positions}
        return prepared

    def inference(self, data: PreparedBatch, *args: Any, **kwargs: Any) -> np.ndarray:  # type: ignore[override]
        """Calibrated probabilities for all decodable images of the batch, in one forward pass."""
        assert self.detector is not None
        if data.inputs is None:
            return np.empty((0, len(self.detector.metadata.classes)))
        return self.detector.probabilities(data.inputs)

    def postprocess(self, data: tuple[PreparedBatch, np.ndarray]) -> list[dict[str, Any]]:  # type: ignore[override]
        """One answer per request, in request order: the decision (``decide`` with both thresholds), or the refusal."""
        assert self.detector is not None
        prepared, probabilities = data
        meta = self.detector.metadata
        decided = decide(probabilities, meta.classes, meta.threshold, meta.real_threshold)
        decisions = dict(zip(prepared.positions, decided, strict=True))
        answers: list[dict[str, Any]] = []
        for position in range(prepared.size):
            if position in prepared.errors:
                answers.append(self._refusal(position, prepared.errors[position]))
                continue
            decision = decisions[position]
            if self.settings.consistency:
                decision = check_consistency(
                    self.detector, prepared.files[position], decision, max_pixels=self.settings.max_pixels
                )
            answer: dict[str, Any] = {
                "label": decision.label,
                "p_ai": decision.p_ai,
                "summary": decision.summary,
                "probabilities": decision.probabilities,
                "model_version": self.detector.version,
                "archive_version": self.archive_version,
                "runtime": self.runtime,
            }
            if decision.reason is not None:
                answer["reason"] = decision.reason
            if self.settings.evidence:
                # the decode is let go as soon as its evidence is read
                answer.update(_weigh_evidence(prepared.files[position], decision, prepared.decoded.pop(position, None)))
            answers.append(answer)
            self._count(LABEL_METRIC, "Label", decision.label)
        return answers

    def explain_handle(  # type: ignore[override]
        self, data_preprocess: PreparedBatch, raw_data: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The explanations API's answers: the usual answer, plus ``heatmap`` for each request that asked.

        One forward pass gives the logits and the class activation map (:meth:`Detector.logits_and_cam`);
        a batch may mix predictions and explanations, so only the requests sent to ``/explanations``
        get the map drawn. A model without the map (an ``.onnx`` exported before heatmaps existed)
        answers ``heatmap: null`` and ``heatmap_error`` saying so, beside the usual answer.
        """
        assert self.detector is not None
        prepared = data_preprocess
        classes = len(self.detector.metadata.classes)
        try:
            if prepared.inputs is None:
                logits, cams = np.empty((0, classes)), np.empty((0, 0, 0))
            else:
                logits, cams = self.detector.logits_and_cam(prepared.inputs)
        except NotImplementedError as missing:
            answers = self.postprocess((prepared, self.inference(prepared)))
            for position in self._explained(len(raw_data)):
                if "label" in answers[position]:
                    answers[position].update(heatmap=None, heatmap_error=str(missing))
            return answers
        probabilities = calibrated_probabilities(logits, self.detector.metadata.temperature)
        answers = self.postprocess((prepared, probabilities))
        rows = dict(zip(prepared.positions, cams, strict=True))
        for position in self._explained(len(raw_data)):
            if position in rows:
                answers[position]["heatmap"] = heatmap_data_uri(rows[position])
        return answers

    def _explained(self, size: int) -> list[int]:
        """Positions of the batch whose request came through the explanations API (its ``explain`` header)."""
        return [i for i in range(size) if self.context.get_request_header(i, "explain") == "True"]

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        """preprocess -> one forward pass -> postprocess (or the explanations), and the metrics."""
        started = time.perf_counter()
        self.context = context
        prepared = self.preprocess(data)
        if self._explained(len(data)):
            answers = self.explain_handle(prepared, data)
        else:
            answers = self.postprocess((prepared, self.inference(prepared)))
        self._count(BATCH_METRIC, "BatchSize", str(prepared.size))
        log.info("batch of %d: %d answered, %d refused", prepared.size, len(prepared.positions), len(prepared.errors))
        context.metrics.add_time("HandlerTime", round(1000 * (time.perf_counter() - started), 2), None, "ms")
        return answers

    def _refusal(self, position: int, error: ImageDecodeError) -> dict[str, Any]:
        status = error.status
        self.context.set_response_status(status, error.reason, position)
        self._count(REJECTED_METRIC, "Code", error.reason)
        return {"error": {"code": error.reason, "message": str(error), "status": status}}

    def _count(self, metric: str, dimension: str, value: str) -> None:
        """Add one to a custom counter; dimensions in the order torchserve/metrics.yaml declares them."""
        dimensions = [
            Dimension("ModelName", self.context.model_name),
            Dimension("Level", "Model"),
            Dimension(dimension, value),
        ]
        self.context.metrics.add_counter(metric, 1, None, dimensions)


def _evidence_reads(decoded: DecodedImage) -> bool:
    """Whether the provenance checks read this decode of a file (:func:`provenance.reads_pixels`): worth keeping."""
    import provenance

    return provenance.reads_pixels(decoded)


def _weigh_evidence(data: bytes, decision: Decision, decoded: DecodedImage | None = None) -> dict[str, Any]:
    """``verdict``, ``verdict_source``, ``verdict_reason`` and ``evidence`` from :mod:`provenance`.

    ``decoded``: the model's decode of the file, read by the checks instead of decoding it again.
    Imported here, not at the top: the provenance package (and its C2PA and OpenCV libraries) is only
    needed by archives that turn evidence on.
    """
    import provenance

    return provenance.combine(provenance.inspect(data, None, decoded), decision).to_dict()


def _image_bytes(row: dict[str, Any]) -> bytes:
    """The uploaded file: the raw body (``data``/``body``) or the first file field of a multipart form.

    TorchServe decodes JSON and text bodies before the handler sees them; those are not images.
    """
    value = row.get("data", row.get("body"))
    if value is None:
        value = next((v for v in row.values() if isinstance(v, (bytes, bytearray))), None)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise ImageDecodeError("not_an_image", "the request holds no image file (send the image bytes as the body)")


_service = DetectorHandler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[dict[str, Any]] | None:
    """TorchServe's entry point: called once with ``data=None`` to load, then once per batch."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
