"""The naive design, kept as the reference point of the benchmark: ``python -m loadtests.baseline``.

A FastAPI endpoint that runs eager PyTorch on one image per forward pass: no batching across
requests, no limit on concurrent requests (FastAPI's thread pool runs as many forward passes at once
as requests arrive, each with all of torch's threads), no ONNX Runtime. It speaks the web app's API
(``POST /predict``, multipart field ``files``; ``GET /readyz``) so the same Locust scenario loads
both, and it answers with the core's preprocessing and calibrated decision, so its labels equal the
web app's for the same model.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, File, UploadFile
from fastapi.responses import JSONResponse
from pydantic_settings import CliApp

from detector.preprocessing import ImageDecodeError
from detector.runtimes.torch_eager import TorchDetector
from loadtests.config import BaselineSettings


def create_app(settings: BaselineSettings) -> FastAPI:
    detector = TorchDetector(settings.checkpoint, threads=settings.threads, device="cpu")
    app = FastAPI(title="Baseline: eager PyTorch, one image per request")

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready", "model_version": detector.version}

    @app.post("/predict")
    def predict(files: Annotated[list[UploadFile], File()]) -> JSONResponse:
        """A plain ``def``: FastAPI runs each request in its thread pool, the model call blocking that thread."""
        results: list[dict[str, Any]] = []
        for upload in files:
            try:
                batch = detector.preprocess(upload.file.read())[None]
            except ImageDecodeError as error:
                error_fields = {"code": error.reason, "message": str(error), "status": error.status}
                results.append({"filename": upload.filename, "error": error_fields})
                continue
            decision = detector.classify(batch)[0]
            results.append(
                {
                    "filename": upload.filename,
                    "label": decision.label,
                    "p_ai": decision.p_ai,
                    "summary": decision.summary,
                    "probabilities": decision.probabilities,
                    "model_version": detector.version,
                }
            )
        status = 200 if any("label" in result for result in results) else 422
        return JSONResponse({"model_version": detector.version, "results": results}, status_code=status)

    return app


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(BaselineSettings, cli_args=argv)
    if not settings.checkpoint.is_file():
        print(f"error: no checkpoint at {settings.checkpoint}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
