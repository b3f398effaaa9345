"""Where one request's CPU time goes in the web app: ``python -m loadtests.request_cost --image FILE``.

Throughput benchmarks (``make bench``) give the web app's CPU time per image as one number. This tool
splits it up. It runs the web app in this process (uvicorn in a thread of its own, on a free port), sends
it ``--requests`` requests for one file, one after another, and reads every thread's CPU time from
``/proc/self/task`` before and after. Each thread is put in a group:

* **event loop**: HTTP parsing, the multipart form, the evidence's bookkeeping, the JSON answer;
* **request workers** (AnyIO's worker threads): decoding, resizing, normalising, the calls into the engine;
* **engine's own threads** (threads Python did not start): OpenVINO's forward passes. ONNX Runtime on one
  thread runs on the calling worker instead;
* **other Python threads**: the provenance checks' pool, when the evidence is on;
* **client**: the requests' sender (this process's main thread), shown apart and left out of the total.

The evidence follows ``DETECTOR_PROVENANCE_*`` as in the web app (``DETECTOR_PROVENANCE_ENABLED=false``
turns it off). Linux only: it reads ``/proc``.

    .venv/bin/python -m loadtests.request_cost --image runs/bench/images/photo_0004.jpg
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import uvicorn
from pydantic_settings import CliApp

from loadtests.config import RequestCostSettings
from serving.app import create_app
from serving.config import ServeSettings
from serving.protocol import with_header_timeout

CLIENT, LOOP, WORKERS, ENGINE, OTHER = (
    "client",
    "event loop",
    "request workers",
    "engine's own threads",
    "other Python threads",
)
#: the name uvicorn's thread gets here, to tell it from the rest
LOOP_THREAD = "request-cost event loop"


def thread_seconds() -> dict[int, float]:
    """CPU time (user + system) of each thread of this process, by native thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # the thread ended between the listing and the read
            continue
        seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def group_of(native_id: int, python_threads: dict[int, str]) -> str:
    """Which group a thread belongs to, from the names of the threads Python started."""
    name = python_threads.get(native_id)
    if name is None:
        return ENGINE
    if name == "MainThread":
        return CLIENT
    if name == LOOP_THREAD:
        return LOOP
    return WORKERS if name.startswith("AnyIO worker thread") else OTHER


def measure(settings: RequestCostSettings) -> tuple[Counter[str], float, int]:
    """CPU seconds per group over the timed requests, the answer's own ``time_ms``, and the status."""
    serve = ServeSettings(model=settings.model, engine=settings.engine, threads=settings.threads)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(serve),
        log_level="warning",
        http=with_header_timeout(serve.header_timeout),
        loop=settings.loop,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=LOOP_THREAD, daemon=True)
    thread.start()
    data = settings.image.read_bytes()
    files = {"files": (settings.image.name, data, "application/octet-stream")}
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not server.started or client.get("/readyz").status_code != 200:  # the model loads at startup
                if not thread.is_alive():
                    raise RuntimeError("the web app did not start: its log above says why")
                time.sleep(0.1)
            for _ in range(settings.warmup):
                response = client.post("/predict", files=files)
            before = thread_seconds()
            for _ in range(settings.requests):
                response = client.post("/predict", files=files)
            after = thread_seconds()
            names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    finally:
        server.should_exit = True
        thread.join()
    spent: Counter[str] = Counter()
    for native_id, seconds in after.items():
        spent[group_of(native_id, names)] += seconds - before.get(native_id, 0.0)
    result = response.json()["results"][0] if response.status_code == 200 else {}
    return spent, float(result.get("time_ms") or 0.0), response.status_code


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(RequestCostSettings, cli_args=argv)
    for path, fix in ((settings.image, "pass --image FILE"), (settings.model, "run make export, or pass --model")):
        if not path.is_file():
            print(f"error: {path} does not exist: {fix}", file=sys.stderr)
            return 2
    spent, time_ms, status = measure(settings)
    if status != 200:
        print(
            f"error: the web app answered {status} for {settings.image}: send it an image it can read", file=sys.stderr
        )
        return 1
    per_request = {group: 1000 * seconds / settings.requests for group, seconds in spent.items()}
    print(f"{settings.image} ({settings.image.stat().st_size:,} bytes), {settings.requests} requests one after another")
    print("\n| thread group | CPU ms per request |\n| --- | ---: |")
    for group in (LOOP, WORKERS, ENGINE, OTHER):
        print(f"| {group} | {per_request.get(group, 0.0):.2f} |")
    print(f"| **the web app, all threads** | **{sum(v for g, v in per_request.items() if g != CLIENT):.2f}** |")
    print(f"| (client, left out) | {per_request.get(CLIENT, 0.0):.2f} |")
    print(f"\nthe answer's time_ms (its decode and forward pass, wall clock): {time_ms}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
