"""The FastAPI app: ``POST /predict`` (JSON), the upload page at ``/``, health and readiness probes.

Status codes: 200 when at least one file got an answer (each file then carries its own result or
error); when every file is refused, the status of the first refusal: 413 too large, 415 not an
image, 422 empty or corrupt; 400 for too many files; 504 when the prediction outlasts the timeout.
Error bodies are short sentences, never stack traces.  Uploaded bytes stay in memory and are
never written to disk under their own names.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from detector import __version__
from detector.preprocessing import ImageDecodeError, load_image
from provenance import ProvenanceSettings
from serving.backends import Backend, Prediction, create_backend
from serving.config import ServeSettings
from serving.evidence import EvidenceItem, weigh
from serving.limits import BodySizeLimit

log = logging.getLogger("serving")
HERE = Path(__file__).parent

#: HTTP status for each refusal reason of the core's decoder
STATUS_FOR_REASON = {"too_large": 413, "not_an_image": 415, "empty": 422, "truncated": 422}


class FileError(BaseModel):
    code: str
    message: str
    status: int


class FileResult(BaseModel):
    filename: str
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    model_version: str | None = None
    time_ms: float | None = None
    #: the answer once the file's own provenance evidence is weighed: ``label`` unless strong evidence decided
    verdict: str | None = None
    verdict_source: Literal["model", "evidence"] | None = None
    verdict_reason: str | None = None
    evidence: list[EvidenceItem] | None = None
    error: FileError | None = None


class PredictResponse(BaseModel):
    model_version: str
    results: list[FileResult]


class RequestRefused(Exception):
    """A whole request is refused before any prediction (too many files, too large)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backend = create_backend(settings)
        log.info("serving model %s with the %s backend", app.state.backend.version, settings.backend)
        yield
        await app.state.backend.close()

    app = FastAPI(
        title="Real-vs-AI image detector",
        version=__version__,
        description="Tells a photograph from an AI-generated image, with a calibrated confidence.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.provenance = ProvenanceSettings()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)

    @app.exception_handler(RequestRefused)
    async def refused(request: Request, error: RequestRefused) -> JSONResponse:
        return _refusal(error.status, error.code, error.message)

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"])
    async def readyz(request: Request) -> JSONResponse:
        """The model is loaded and answering."""
        backend: Backend | None = getattr(request.app.state, "backend", None)
        if backend is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "model_version": backend.version})

    @app.post("/predict", response_model=PredictResponse, tags=["prediction"])
    async def predict(request: Request, files: Annotated[list[UploadFile], File()]) -> JSONResponse:
        """Classify one or several images (multipart field ``files``)."""
        results = [result for result, _ in await _classify(request, files)]
        return JSONResponse(
            PredictResponse(model_version=request.app.state.backend.version, results=results).model_dump(
                exclude_none=True
            ),
            status_code=_overall_status(results),
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "index.html", _page_context(request, results=None))

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    async def page_upload(request: Request, files: Annotated[list[UploadFile], File()]) -> HTMLResponse:
        """The no-JavaScript path: a plain form post, answered with the page and its results."""
        try:
            classified = await _classify(request, files)
        except RequestRefused as error:
            context = _page_context(request, results=[], problem=error.message)
            return templates.TemplateResponse(request, "index.html", context, status_code=error.status)
        shown = [
            (result, await anyio.to_thread.run_sync(_preview, data) if result.error is None else None)
            for result, data in classified
        ]
        status = _overall_status([result for result, _ in classified])
        return templates.TemplateResponse(request, "index.html", _page_context(request, shown), status_code=status)

    return app


async def _classify(request: Request, files: list[UploadFile]) -> list[tuple[FileResult, bytes]]:
    """Each file's result, beside its bytes (the page makes previews of them)."""
    uploads = await _read_uploads(files, request.app.state.settings)
    predictions = await _run(request, [data for _, data in uploads])
    version = request.app.state.backend.version
    classified = [
        (_result(name, prediction, version), data)
        for (name, data), prediction in zip(uploads, predictions, strict=True)
    ]
    # evidence the backend already weighed (TorchServe's handler) is taken as it is; the rest is read here
    to_weigh = []
    for (result, data), prediction in zip(classified, predictions, strict=True):
        if result.error is None and prediction.provenance is not None:
            _set_provenance(result, **prediction.provenance)
        elif result.error is None:
            to_weigh.append((result, data))
    verdicts = await weigh([(data, str(result.label)) for result, data in to_weigh], request.app.state.provenance)
    for (result, _), verdict in zip(to_weigh, verdicts, strict=True):
        _set_provenance(result, **verdict.to_dict())
    return classified


def _set_provenance(
    result: FileResult,
    verdict: str,
    verdict_source: Literal["model", "evidence"],
    verdict_reason: str,
    evidence: list[dict[str, Any]],
) -> None:
    result.verdict, result.verdict_source, result.verdict_reason = verdict, verdict_source, verdict_reason
    result.evidence = [EvidenceItem(**item) for item in evidence]


async def _read_uploads(files: list[UploadFile], settings: ServeSettings) -> list[tuple[str, bytes]]:
    """Each file's name and bytes, refusing the request when it holds too many files."""
    if len(files) > settings.max_files:
        raise RequestRefused(
            400, "too_many_files", f"{len(files)} files sent; at most {settings.max_files} per request"
        )
    uploads = []
    for upload in files:
        # read one byte past the limit: enough to know a file is too large without reading all of it
        data = await upload.read(settings.max_file_bytes + 1)
        uploads.append((upload.filename or "upload", data))
    return uploads


async def _run(request: Request, files: list[bytes]) -> list[Prediction]:
    settings: ServeSettings = request.app.state.settings
    backend: Backend = request.app.state.backend
    oversized = {i for i, data in enumerate(files) if len(data) > settings.max_file_bytes}
    accepted = [data for i, data in enumerate(files) if i not in oversized]
    try:
        with anyio.fail_after(settings.request_timeout):
            answered = iter(await backend.predict(accepted) if accepted else [])
    except TimeoutError:
        raise RequestRefused(504, "timeout", f"no answer within {settings.request_timeout:g} s") from None
    too_large = ImageDecodeError("too_large", f"the file is larger than {settings.max_file_bytes:,} bytes")
    return [Prediction(None, too_large, 0.0) if i in oversized else next(answered) for i in range(len(files))]


def _result(filename: str, prediction: Prediction, version: str) -> FileResult:
    if prediction.error is not None:
        error = prediction.error
        return FileResult(
            filename=filename,
            error=FileError(code=error.reason, message=str(error), status=STATUS_FOR_REASON.get(error.reason, 422)),
        )
    decision = prediction.decision
    assert decision is not None
    return FileResult(
        filename=filename,
        label=decision.label,
        confidence=round(decision.confidence, 6),
        probabilities={k: round(v, 6) for k, v in decision.probabilities.items()},
        model_version=version,
        time_ms=prediction.time_ms,
    )


def _overall_status(results: list[FileResult]) -> int:
    if not results or any(r.error is None for r in results):
        return 200
    return results[0].error.status  # type: ignore[union-attr]


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "status": status}}, status_code=status)


def _preview(data: bytes, size: int = 320) -> str:
    """A small JPEG of the upload as a data: URI, so the page never stores the file anywhere."""
    image = load_image(data, draft_size=size)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _page_context(request: Request, results: list | None, problem: str | None = None) -> dict:
    settings: ServeSettings = request.app.state.settings
    backend: Backend | None = getattr(request.app.state, "backend", None)
    return {
        "results": results,
        "problem": problem,
        "model_version": backend.version if backend else "loading",
        "threshold": backend.threshold if backend else None,
        "max_files": settings.max_files,
        "max_megabytes": settings.max_file_bytes // (1024 * 1024),
    }
