"""``python -m serving`` (``make serve``): run the web app with uvicorn on the configured model."""

from __future__ import annotations

import sys

import uvicorn
from pydantic_settings import CliApp

from serving.app import create_app
from serving.config import ServeSettings


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(ServeSettings, cli_args=argv)
    if settings.backend == "onnx" and (settings.model is None or not settings.model.is_file()):
        print(
            f"error: no ONNX model at {settings.model}. Train one (make train DATA=...) and run make serve, "
            "which exports the newest run's model.pt, or pass --model PATH.onnx",
            file=sys.stderr,
        )
        return 2
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
