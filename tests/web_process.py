"""``python -m serving`` in a real uvicorn process, handed to a test once it answers (ready, or only alive)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx

from handlers.local_server import free_port


@contextmanager
def running_web_server(model: Path, log: Path, *, ready_path: str = "/readyz", **env: str) -> Iterator[str]:
    """``python -m serving`` in a real uvicorn process on a free loopback port, with extra settings in ``env``.

    It is handed over once ``ready_path`` answers 200: ``/readyz`` (ready to predict) by default.
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
                if httpx.get(f"{url}{ready_path}", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer {ready_path}:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def live_web_server(model: Path, log: Path, **env: str) -> AbstractContextManager[str]:
    """The web app once it is *alive* (``/healthz``): for servers started to show what they say when their
    backend cannot answer, which are never ready."""
    return running_web_server(model, log, ready_path="/healthz", **env)
