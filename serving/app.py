"""The FastAPI app: ``POST /predict`` (JSON), the upload page at ``/``, health and readiness probes.

Status codes: 200 when at least one file got an answer (each file then carries its own result or
error); when every file is refused, the status of the first refusal: 413 too large, 415 not an
image, 422 empty or corrupt; 400 for too many files; 408 when the body does not arrive in time;
422 for a request that is not a multipart form with ``files``; 503 (with Retry-After) when the
upload memory budget is full or the backend cannot be reached; 502 when the backend refuses the
server itself (token, model name); 504 when the prediction outlasts the timeout; 400 for an option
(``explain``, ``consistency``) the backend cannot honour, 422 for one that is not a boolean. Every refusal has
one shape (:mod:`serving.errors`): short sentences, never stack traces.  Uploads are spooled by
Starlette to anonymous temporary files while they arrive, then read into memory within the upload
memory budget; they are never written to disk under their own names.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from detector import __version__
from detector.preprocessing import ImageDecodeError, load_image
from provenance import ProvenanceSettings, reads_pixels
from serving.backends import Backend, BackendUnavailable, OnnxBackend, Prediction, create_backend
from serving.config import ServeSettings
from serving.errors import error_response
from serving.evidence import EvidenceItem, weigh
from serving.limits import BodyLimits
from serving.memory import in_background

log = logging.getLogger("serving")
HERE = Path(__file__).parent


class FileError(BaseModel):
    code: str
    message: str
    status: int


Verdict = Literal["ai", "real", "unsure"]


class FileResult(BaseModel):
    filename: str
    label: Verdict | None = Field(
        None,
        description="the model's verdict: ai from its threshold up, real at or below its real threshold, "
        "unsure between them (or when the consistency check saw the verdict flip)",
    )
    p_ai: float | None = Field(
        None, description="calibrated probability that the image is AI-generated: the number behind every verdict"
    )
    summary: str | None = Field(None, description="the verdict and P(ai) in words, e.g. 'P(AI) 38 %: unsure'")
    reason: str | None = Field(None, description="why the verdict is what it is, when not the thresholds alone")
    probabilities: dict[str, float] | None = None
    heatmap: str | None = Field(
        None,
        description="with explain=true: a transparent PNG data: URI of the image's aspect ratio to stretch over it, "
        "red where the model saw evidence of AI generation, cyan where it saw evidence of a real photo",
    )
    model_version: str | None = None
    time_ms: float | None = None
    #: the answer once the file's own provenance evidence is weighed: ``label`` unless strong evidence decided
    verdict: Verdict | None = None
    verdict_source: Literal["model", "evidence"] | None = None
    verdict_reason: str | None = None
    evidence: list[EvidenceItem] | None = None
    error: FileError | None = None


class PredictResponse(BaseModel):
    model_version: str
    results: list[FileResult]


class RequestRefused(Exception):
    """A whole request is refused (too many files, server busy, backend down, timeout)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


#: what each FastAPI/Starlette HTTP error status is called in the error shape
HTTP_ERROR_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}

#: what a request the API cannot use is told, whatever FastAPI's validation found wrong with it
FORM_HINT = "send a multipart/form-data body with one or more image files in the field 'files'"


#: what a request asking for an option the backend cannot honour is told, by option
UNSUPPORTED = {
    "explain": "explain=true (heatmaps) is not available here: {why}",
    "consistency": "consistency=true (the consistency check) is not available here: {why}",
}

#: a request holding this much upload leaves freed memory worth handing back to the system (serving/memory.py)
RELEASE_AFTER_BYTES = 32 * 1024 * 1024


class UploadBudget:
    """The upload bytes that requests hold in memory together, and the most they may.

    Each request reserves the size of its files (known once Starlette has spooled them) before it
    reads them into memory, and gives it back when its answer is made. A request that would take
    the total over ``limit`` is refused with 503 and Retry-After rather than queued holding its
    memory; a request alone is always taken, so the largest allowed request can always be served.
    Counted on the event loop, where nothing runs between the check and the reservation.
    """

    def __init__(self, limit: int, retry_after: int) -> None:
        self.limit, self.retry_after = limit, retry_after
        self.held = 0
        #: what hands memory back once the last large upload is answered (the backend's release_memory)
        self.release: Callable[[], None] | None = None
        #: a large upload was held since memory was last handed back
        self.large_since_release = False

    @contextmanager
    def hold(self, size: int) -> Iterator[None]:
        if self.held and self.held + size > self.limit:
            raise RequestRefused(
                503,
                "busy",
                f"the server holds as many uploads as it may ({self.limit:,} bytes); retry in {self.retry_after} s",
                {"Retry-After": str(self.retry_after)},
            )
        self.held += size
        self.large_since_release = self.large_since_release or size >= RELEASE_AFTER_BYTES
        try:
            yield
        finally:
            self.held -= size
            if self.held == 0 and self.large_since_release and self.release is not None:
                self.large_since_release = False
                in_background(self.release)


def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


def get_loaded_backend(request: Request) -> Backend | None:
    """The backend, or None while the app is still starting (the lifespan creates it)."""
    return getattr(request.app.state, "backend", None)


def get_backend(backend: Annotated[Backend | None, Depends(get_loaded_backend)]) -> Backend:
    if backend is None:
        raise RequestRefused(503, "loading", "the model is still loading; retry in a few seconds", {"Retry-After": "5"})
    return backend


def get_upload_budget(request: Request) -> UploadBudget:
    return request.app.state.upload_budget


def get_provenance(request: Request) -> ProvenanceSettings:
    return request.app.state.provenance


# What the routes take, as typed dependencies: tests and embedders swap any of them with
# ``app.dependency_overrides[get_backend] = ...`` instead of reaching into ``app.state``.
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]
BackendDep = Annotated[Backend, Depends(get_backend)]
LoadedBackendDep = Annotated[Backend | None, Depends(get_loaded_backend)]
BudgetDep = Annotated[UploadBudget, Depends(get_upload_budget)]
ProvenanceDep = Annotated[ProvenanceSettings, Depends(get_provenance)]
Uploads = Annotated[list[UploadFile], File()]
ExplainQuery = Annotated[bool, Query(description="add a heatmap to each answered file (one forward pass gives both)")]
ConsistencyQuery = Annotated[
    bool,
    Query(
        description="score each file again re-saved as JPEG q75, halved and centre-cropped; a verdict that "
        "flips becomes unsure, with the reason (about three times the model's work per file)"
    ),
]


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backend = create_backend(settings)
        app.state.upload_budget.release = app.state.backend.release_memory
        if isinstance(app.state.backend, OnnxBackend):
            # decode each upload once: the model's decode is handed on to the evidence where it reads those pixels
            app.state.backend.keep_decoded = lambda decoded: reads_pixels(decoded, app.state.provenance)
        loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]  # uvloop where installed (uvicorn's auto)
        log.info("serving model %s with the %s backend on %s", app.state.backend.version, settings.backend, loop)
        yield
        await app.state.backend.close()

    app = FastAPI(
        title="Real-vs-AI image detector",
        version=__version__,
        description=(
            "Tells a photograph from an AI-generated image. Each file gets a verdict, `ai`, `real` or `unsure` "
            "(the model cannot tell: treat it as unknown), and the calibrated probability that it is AI-generated, "
            "`p_ai`, which the verdict is read from: `ai` from the model's threshold up, `real` at or below its "
            "real threshold, `unsure` between. `summary` says both in words (`P(AI) 38 %: unsure`). "
            "`explain=true` adds a heatmap per file; `consistency=true` turns a verdict that flips when the image "
            "is re-saved or resized into `unsure`, with a `reason`. `verdict` is the answer once the file's own "
            "provenance evidence is weighed (strong evidence decides, otherwise `verdict` is `label`)."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.provenance = ProvenanceSettings()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["percent"] = percent

    app.state.upload_budget = UploadBudget(settings.max_upload_memory, settings.retry_after)
    app.add_middleware(BodyLimits, max_bytes=settings.max_request_bytes, timeout=settings.body_timeout)

    @app.exception_handler(RequestRefused)
    async def refused(request: Request, error: RequestRefused) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        """FastAPI's ``{"detail": [...]}`` in the API's one error shape: one sentence saying what to send."""
        found = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in error.errors()[:3])
        if error.errors() and all(e.get("loc", ("",))[0] == "query" for e in error.errors()):  # only the options
            return error_response(422, "invalid_request", f"explain and consistency take true or false ({found})")
        message = f"{FORM_HINT} ({found})" if found else FORM_HINT
        if request.url.path == "/" and request.method == "POST":  # the page's own form post
            context = _page_context(
                settings, getattr(app.state, "backend", None), [], f"Choose one or more images first: {message}."
            )
            return templates.TemplateResponse(request, "index.html", context, status_code=422)
        return error_response(422, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """404, 405, and Starlette's 400 for a body it cannot parse as a form, in the same shape."""
        code = HTTP_ERROR_CODES.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail), error.headers)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(HERE / "static" / "favicon.ico", media_type="image/x-icon")

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"])
    async def readyz(backend: LoadedBackendDep) -> JSONResponse:
        """The model is loaded and answering (with TorchServe: it answered a probe just now)."""
        if backend is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        try:
            await backend.check()
        except BackendUnavailable as error:
            body = {"status": "unavailable", "error": {"code": error.code, "message": error.message, "status": 503}}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "model_version": backend.version})

    @app.post("/predict", response_model=PredictResponse, tags=["prediction"])
    async def predict(
        files: Uploads,
        settings: SettingsDep,
        backend: BackendDep,
        budget: BudgetDep,
        provenance: ProvenanceDep,
        explain: ExplainQuery = False,
        consistency: ConsistencyQuery = False,
    ) -> JSONResponse:
        """Classify one or several images (multipart field ``files``): a verdict and P(ai) for each.

        ``?explain=true`` adds ``heatmap`` to each answered file, ``?consistency=true`` checks each verdict
        against re-saved variants of the file. A backend that cannot do either refuses it with 400.
        """
        options = _options(backend, settings, explain=explain, consistency=consistency)
        with budget.hold(_upload_size(files, settings)):
            results = [result for result, _ in await _classify(files, settings, backend, provenance, options)]
        return JSONResponse(
            PredictResponse(model_version=backend.version, results=results).model_dump(exclude_none=True),
            status_code=_overall_status(results),
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request, settings: SettingsDep, backend: LoadedBackendDep) -> HTMLResponse:
        return templates.TemplateResponse(request, "index.html", _page_context(settings, backend, None))

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    async def page_upload(
        request: Request,
        files: Uploads,
        settings: SettingsDep,
        backend: BackendDep,
        budget: BudgetDep,
        provenance: ProvenanceDep,
        explain: Annotated[bool, Form()] = False,
        consistency: Annotated[bool, Form()] = False,
    ) -> HTMLResponse:
        """The no-JavaScript path: a plain form post, answered with the page and its results."""
        chosen = {"explain": explain, "consistency": consistency}
        try:
            options = _options(backend, settings, **chosen)
            with budget.hold(_upload_size(files, settings)):
                classified = await _classify(files, settings, backend, provenance, options)
                shown = [
                    (result, await anyio.to_thread.run_sync(_preview, data) if result.error is None else None)
                    for result, data in classified
                ]
        except RequestRefused as error:
            context = _page_context(settings, backend, [], error.message, chosen)
            return templates.TemplateResponse(
                request, "index.html", context, status_code=error.status, headers=error.headers
            )
        status = _overall_status([result for result, _ in classified])
        return templates.TemplateResponse(
            request, "index.html", _page_context(settings, backend, shown, None, chosen), status_code=status
        )

    return app


def _options(backend: Backend, settings: ServeSettings, **chosen: bool) -> dict[str, bool]:
    """The options asked for, as :meth:`Backend.predict` takes them; 400 for one the backend cannot honour."""
    options = {name: True for name, on in chosen.items() if on}
    for name in options:
        if name not in backend.features:
            why = (
                f"the {settings.backend} backend takes it from its model config (handler.{name}), not per request"
                if settings.backend != "onnx"
                else "the served model has no heatmap output; re-export it with `make export`"
            )
            raise RequestRefused(400, "unsupported_option", UNSUPPORTED[name].format(why=why))
    return options


async def _classify(
    files: list[UploadFile],
    settings: ServeSettings,
    backend: Backend,
    provenance: ProvenanceSettings,
    options: dict[str, bool] | None = None,
) -> list[tuple[FileResult, bytes]]:
    """Each file's result, beside its bytes (the page makes previews of them)."""
    uploads = await _read_uploads(files, settings)
    predictions = await _run([data for _, data in uploads], settings, backend, options or {})
    version = backend.version
    classified = [
        (_result(name, prediction, version), data)
        for (name, data), prediction in zip(uploads, predictions, strict=True)
    ]
    # evidence the backend already weighed (TorchServe's handler) is taken as it is; the rest is read here,
    # from the model's own decode of the file where the backend handed it on (Prediction.decoded)
    to_weigh = []
    for (result, data), prediction in zip(classified, predictions, strict=True):
        if result.error is None and prediction.provenance is not None:
            _set_provenance(result, **prediction.provenance)
        elif result.error is None:
            to_weigh.append((result, data, prediction.decoded))
    verdicts = await weigh([(data, str(result.label), decoded) for result, data, decoded in to_weigh], provenance)
    for (result, _, _), verdict in zip(to_weigh, verdicts, strict=True):
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


def _upload_size(files: list[UploadFile], settings: ServeSettings) -> int:
    """The bytes reading these files will hold in memory: each file's size, as far as it is read."""
    return sum(min(upload.size or 0, settings.max_file_bytes + 1) for upload in files[: settings.max_files])


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


async def _run(
    files: list[bytes], settings: ServeSettings, backend: Backend, options: dict[str, bool]
) -> list[Prediction]:
    oversized = {i for i, data in enumerate(files) if len(data) > settings.max_file_bytes}
    accepted = [data for i, data in enumerate(files) if i not in oversized]
    try:
        with anyio.fail_after(settings.request_timeout):
            answered = iter(await backend.predict(accepted, **options) if accepted else [])
    except TimeoutError:
        raise RequestRefused(504, "timeout", f"no answer within {settings.request_timeout:g} s") from None
    except BackendUnavailable as error:
        log.warning("backend failure: %s", error.message)
        retry = {"Retry-After": str(settings.retry_after)} if error.status == 503 else None
        raise RequestRefused(error.status, error.code, error.message, retry) from None
    too_large = ImageDecodeError("too_large", f"the file is larger than {settings.max_file_bytes:,} bytes")
    return [Prediction(None, too_large, 0.0) if i in oversized else next(answered) for i in range(len(files))]


def _result(filename: str, prediction: Prediction, version: str) -> FileResult:
    if prediction.error is not None:
        error = prediction.error
        return FileResult(
            filename=filename,
            error=FileError(code=error.reason, message=str(error), status=error.status),
        )
    decision = prediction.decision
    assert decision is not None
    return FileResult(
        filename=filename,
        label=decision.label,
        p_ai=round(decision.p_ai, 6),
        summary=decision.summary,
        reason=decision.reason,
        probabilities={k: round(v, 6) for k, v in decision.probabilities.items()},
        heatmap=prediction.heatmap,
        model_version=version,
        time_ms=prediction.time_ms,
    )


def _overall_status(results: list[FileResult]) -> int:
    if not results or any(r.error is None for r in results):
        return 200
    return results[0].error.status  # type: ignore[union-attr]


def _preview(data: bytes, size: int = 320) -> str:
    """A small JPEG of the upload as a data: URI, so the page never stores the file anywhere."""
    image = load_image(data, draft_size=size)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def percent(probability: float) -> str:
    """A threshold as a percentage with the decimals it needs: 88, and 99.99996 or 0.5 rather than 100 or 0."""
    value = 100 * probability
    for digits in range(7):
        text = f"{value:.{digits}f}"
        if value in (0.0, 100.0) or float(text) not in (0.0, 100.0):
            break
    return text


def _page_context(
    settings: ServeSettings,
    backend: Backend | None,
    results: list | None,
    problem: str | None = None,
    chosen: dict[str, bool] | None = None,
) -> dict:
    return {
        "results": results,
        "problem": problem,
        "model_version": backend.version if backend else "loading",
        "threshold": backend.threshold if backend else None,
        "real_threshold": backend.real_threshold if backend else None,
        "features": backend.features if backend else frozenset(),
        "chosen": chosen or {},
        "max_files": settings.max_files,
        "max_megabytes": settings.max_file_bytes // (1024 * 1024),
    }
