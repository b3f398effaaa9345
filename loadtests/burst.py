"""Large concurrent uploads against the web app, and what they do to its memory: ``python -m loadtests.burst``.

Starts ``python -m serving`` on loopback (as ``make serve`` runs it), then sends ``--rounds`` bursts of
``--requests`` requests at the same moment, each with ``--files-per-request`` noise JPEGs of
``--file-mib`` MiB (by default 8 x 16 x 19 MiB, 2.4 GB in flight: the load that once took the server
from 0.6 GB to 3.5 GB and left it there). It prints the statuses it got (200, and 503 with
Retry-After when the upload memory budget was full; a client waits that long and sends again, up to
``--retries`` times, as a well-behaved client would), and the server's memory, sampled the whole time:
before the first burst, its peak, and *settled*, after ``--settle`` seconds of quiet.

The exit status is non-zero when a request got anything but 200 or 503, or when the server died.
"""

from __future__ import annotations

import io
import json
import math
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass

import httpx
import numpy as np
from PIL import Image
from pydantic_settings import CliApp

from loadtests import artefacts, servers
from loadtests.config import BurstSettings
from loadtests.images import ImagePool
from loadtests.machine import describe


@dataclass
class BurstResult:
    requests: int
    file_mib: float
    #: each request's final status (after its retries)
    statuses: dict[str, int]
    #: 503s answered along the way, each followed by a retry
    busy_answers: int
    retry_after_seen: bool
    rss_before_mb: float
    rss_peak_mb: float
    rss_settled_mb: float
    seconds_per_round: list[float]
    server_alive: bool

    def format(self, settings: BurstSettings) -> str:
        total = settings.requests * settings.files_per_request * self.file_mib
        return "\n".join(
            [
                f"burst: {settings.rounds} x {settings.requests} requests at once, each {settings.files_per_request} "
                f"x {self.file_mib:.1f} MiB ({total / 1024:.2f} GiB in flight per burst)",
                f"  statuses        {', '.join(f'{k}: {v}' for k, v in sorted(self.statuses.items()))} in the end; "
                f"{self.busy_answers} 503s on the way"
                + (" (each with Retry-After, then sent again)" if self.retry_after_seen else ""),
                f"  rounds          {', '.join(f'{s:.1f} s' for s in self.seconds_per_round)}",
                f"  server memory   {self.rss_before_mb:.0f} MB before, {self.rss_peak_mb:.0f} MB peak, "
                f"{self.rss_settled_mb:.0f} MB settled ({settings.settle:g} s after the last burst)",
                f"  server alive    {'yes' if self.server_alive else 'NO'}",
            ]
        )


def noise_jpeg(mib: float, seed: int = 0) -> bytes:
    """A camera-sized JPEG of about ``mib`` MiB: noise compresses poorly, ~1.2 bytes per pixel at quality 95."""
    pixels = mib * 2**20 / 1.2
    width = int(math.sqrt(pixels * 4 / 3))
    height = int(width * 3 / 4)
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _burst(url: str, data: bytes, settings: BurstSettings) -> tuple[list[int], int, bool]:
    statuses: list[int] = []
    busy = 0
    retry_after = False
    lock = threading.Lock()
    start = threading.Barrier(settings.requests)

    def one(index: int) -> None:
        nonlocal retry_after, busy
        files = [("files", (f"big-{index}-{i}.jpg", data, "image/jpeg")) for i in range(settings.files_per_request)]
        start.wait()
        for attempt in range(settings.retries + 1):
            try:
                response = httpx.post(f"{url}/predict", files=files, timeout=600)
                status, wait = response.status_code, response.headers.get("retry-after")
            except httpx.HTTPError:
                status, wait = 0, None  # a broken connection
            if status != 503 or attempt == settings.retries:
                break
            with lock:
                busy += 1
                retry_after = retry_after or wait is not None
            time.sleep(float(wait or 1))
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(settings.requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, busy, retry_after


def _median_mb(samples: list[tuple[float, int]], since: float) -> float:
    window = sorted(rss for t, rss in samples if t >= since) or [samples[-1][1]]
    return window[len(window) // 2] / 2**20


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(BurstSettings, cli_args=argv)
    results = settings.work_dir / "burst" / time.strftime("%Y%m%d-%H%M%S")
    pool = ImagePool.from_folder(settings.images)
    model = settings.model or artefacts.bench_onnx(
        settings.work_dir, artefacts.bench_checkpoint(settings.work_dir), settings.images
    )
    data = noise_jpeg(settings.file_mib)
    spec = servers.webapp("webapp", model, provenance=True)
    spec.command += settings.server_args
    log = results / "server.log"
    statuses: Counter[str] = Counter()
    retry_after = False
    busy = 0
    rounds: list[float] = []
    with servers.RunningServer(spec, log, settings.sample_interval) as server:
        server.wait_first_answer(pool.images[0], 120)
        assert server.sampler is not None and server.process is not None
        time.sleep(2)
        before = _median_mb(server.sampler.samples, server.sampler.samples[-1][0] - 1.5)
        for _ in range(settings.rounds):
            started = time.perf_counter()
            got, turned_away, seen = _burst(spec.host, data, settings)
            rounds.append(time.perf_counter() - started)
            statuses.update(str(status) for status in got)
            busy += turned_away
            retry_after = retry_after or seen
        quiet_from = server.sampler.samples[-1][0]
        time.sleep(settings.settle)
        samples = list(server.sampler.samples)
        settled = _median_mb(samples, quiet_from + max(settings.settle - 3, 0))
        alive = server.process.poll() is None
    result = BurstResult(
        requests=settings.requests * settings.rounds,
        file_mib=len(data) / 2**20,
        statuses=dict(statuses),
        busy_answers=busy,
        retry_after_seen=retry_after,
        rss_before_mb=before,
        rss_peak_mb=max(rss for _, rss in samples) / 2**20,
        rss_settled_mb=settled,
        seconds_per_round=rounds,
        server_alive=alive,
    )
    text = result.format(settings)
    print(f"{describe()}; model {model.name}; server flags {' '.join(settings.server_args) or '(defaults)'}\n{text}")
    print(f"results: {results}")
    (results / "burst.txt").write_text(text + "\n")
    (results / "burst.json").write_text(json.dumps(asdict(result), indent=2))
    (results / "memory.csv").write_text(
        "seconds,rss_mb\n" + "".join(f"{t:.1f},{rss / 2**20:.1f}\n" for t, rss in samples)
    )
    healthy = alive and set(statuses) <= {"200", "503"}
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
