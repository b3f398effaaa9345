"""The one shape of every refusal the web app's API sends, whoever sends it (app, middleware, validation).

``{"error": {"code": "too_large", "message": "one sentence", "status": 413}}``: ``code`` is stable and
machine-readable, ``message`` is a sentence fit to show a person (never a stack trace or a path),
``status`` repeats the HTTP status. A file refused inside an answered request carries the same
``error`` object in its own result; TorchServe's handler and the gRPC client use it too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fastapi.responses import JSONResponse


def error_body(status: int, code: str, message: str) -> dict[str, dict[str, str | int]]:
    return {"error": {"code": code, "message": message, "status": status}}


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, message), status_code=status, headers=dict(headers or {}))


def error_bytes(status: int, code: str, message: str) -> bytes:
    """The same body, encoded, for code that answers below FastAPI (the ASGI middleware)."""
    return json.dumps(error_body(status, code, message)).encode()
