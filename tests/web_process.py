"""``python -m serving`` in a real uvicorn process that may never become ready (a backend that cannot answer)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from handlers.local_server import free_port


@contextmanager
def live_web_server(model: Path, log: Path, **env: str) -> Iterator[str]:
    """The web app, with extra ``DETECTOR_SERVE_*`` settings in ``env``, once it is *alive* (``/healthz``).

    conftest's ``running_web_server`` waits for ``/readyz``; these servers are started to show what
    they say when their backend cannot answer, so they are never ready.
    """
    port = free_port()
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "--model", str(model), "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
