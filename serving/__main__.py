"""``python -m serving`` (``make serve``): run the web app with uvicorn on the configured model."""

from __future__ import annotations

import copy
import sys
from typing import Any

import uvicorn
from pydantic_settings import CliApp
from uvicorn.config import LOGGING_CONFIG

from detector.runtimes import EngineUnavailable
from serving.app import create_app
from serving.backends import engine_name
from serving.config import ServeSettings
from serving.protocol import with_header_timeout


def _log_config() -> dict[str, Any]:
    """uvicorn's own logging, with the app's ``serving`` logger printed the same way (it has no handler else)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["serving"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(ServeSettings, cli_args=argv)
    if settings.backend == "onnx" and (settings.model is None or not settings.model.is_file()):
        print(
            f"error: no ONNX model at {settings.model}. Train one (make train DATA=...) and run make serve, "
            "which exports the newest run's model.pt, or pass --model PATH.onnx",
            file=sys.stderr,
        )
        return 2
    if settings.backend == "onnx":
        try:
            engine_name(settings)
        except EngineUnavailable as error:  # said before startup, not in a traceback from the lifespan
            print(f"error: {error} (--engine)", file=sys.stderr)
            return 2
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=_log_config(),
        # h11 with a deadline on each request's headers: uvicorn has none of its own (serving/protocol.py)
        http=with_header_timeout(settings.header_timeout),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
