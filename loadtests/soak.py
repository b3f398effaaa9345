"""A bounded soak of the web app with good and hostile files: ``python -m loadtests.soak`` (``make soak``).

Starts ``python -m serving`` on loopback with its provenance evidence on (as ``make serve`` runs it),
loads it with :class:`MixedWebAppUser` (photos, and odd or hostile files in ``--odd-share`` of the
requests) for ``--duration``, samples the server's memory the whole time, and prints:

* requests answered and refused, and **server errors** (5xx, broken connections, non-JSON bodies);
* the server's memory after warm-up, at the middle and at the end of the run, its peak, and its
  growth over the second half: a server that leaks grows steadily, one that does not levels off.

The exit status is non-zero when there was any server error, when the server died, or when memory
grew by more than ``--max-growth-mb`` over the second half.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic_settings import CliApp

from loadtests import artefacts, servers
from loadtests.config import SoakSettings
from loadtests.images import ImagePool
from loadtests.machine import describe
from loadtests.run import run_locust


@dataclass
class SoakResult:
    requests: int
    photos: int
    odd_files: int
    #: odd-file requests answered with a 4xx (the rest were answered with a prediction)
    refused: int
    server_errors: int
    requests_per_second: float
    rss_after_warmup_mb: float
    rss_middle_mb: float
    rss_end_mb: float
    rss_peak_mb: float
    growth_second_half_mb: float
    server_alive: bool

    def format(self, duration: str, users: int) -> str:
        return "\n".join(
            [
                f"soak: {users} users for {duration}, {self.requests_per_second:.1f} requests/s",
                f"  requests        {self.requests} ({self.photos} photos, {self.odd_files} odd files, "
                f"{self.refused} of them refused with a 4xx)",
                f"  server errors   {self.server_errors} (5xx, broken connections, non-JSON answers)",
                f"  server memory   {self.rss_after_warmup_mb:.0f} MB after warm-up, {self.rss_middle_mb:.0f} MB "
                f"at the middle, {self.rss_end_mb:.0f} MB at the end, {self.rss_peak_mb:.0f} MB peak",
                f"  growth          {self.growth_second_half_mb:+.0f} MB over the second half",
                f"  server alive    {'yes' if self.server_alive else 'NO'}",
            ]
        )


def _rss_at(samples: list[tuple[float, int]], fraction: float) -> float:
    """Median RSS (MB) of the samples around ``fraction`` of the run, so one spike does not decide."""
    if not samples:
        return 0.0
    end = samples[-1][0]
    window = [rss for t, rss in samples if abs(t - fraction * end) <= max(0.05 * end, 2.0)] or [samples[-1][1]]
    return sorted(window)[len(window) // 2] / 2**20


def _refusals(stats_csv: Path, server_log: Path) -> tuple[int, int, int]:
    """Requests per scenario from Locust's stats, and how many were refused with a 4xx (the access log)."""
    photos = odd = 0
    with stats_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"].endswith("(photos)"):
                photos = int(row["Request Count"])
            elif row["Name"].endswith("(odd files)"):
                odd = int(row["Request Count"])
    lines = server_log.read_text(errors="replace").splitlines()
    refused = sum(1 for line in lines if '"POST /predict HTTP/1.1" 4' in line)
    return photos, odd, refused


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(SoakSettings, cli_args=argv)
    try:
        ImagePool.from_any_files(settings.odd_files)
    except FileNotFoundError as error:
        print(f"error: {error}: make soak writes the test suite's hostile corpus there", file=sys.stderr)
        return 2
    results = settings.work_dir / "soak" / time.strftime("%Y%m%d-%H%M%S")
    ImagePool.from_folder(settings.images, settings.image_count, settings.seed)
    model = settings.model or artefacts.bench_onnx(
        settings.work_dir, artefacts.bench_checkpoint(settings.work_dir), settings.images
    )
    spec = servers.webapp("webapp", model, provenance=True)
    log = results / "server.log"
    first = ImagePool.from_folder(settings.images, settings.image_count, settings.seed).images[0]
    with servers.RunningServer(spec, log, settings.sample_interval) as server:
        server.wait_first_answer(first, 120)
        _, summary = run_locust(
            user_class="MixedWebAppUser",
            host=spec.host,
            users=settings.users,
            duration=settings.duration,
            output=results,
            scenario=settings,
        )
        assert server.process is not None and server.sampler is not None
        alive = server.process.poll() is None
        samples = list(server.sampler.samples)
    photos, odd, refused = _refusals(results / "locust_stats.csv", log)
    middle, end = _rss_at(samples, 0.5), _rss_at(samples, 1.0)
    result = SoakResult(
        requests=summary.requests,
        photos=photos,
        odd_files=odd,
        refused=refused,
        server_errors=summary.failures,
        requests_per_second=summary.requests_per_second,
        rss_after_warmup_mb=_rss_at(samples, 0.1),
        rss_middle_mb=middle,
        rss_end_mb=end,
        rss_peak_mb=max((rss for _, rss in samples), default=0) / 2**20,
        growth_second_half_mb=end - middle,
        server_alive=alive,
    )
    text = result.format(settings.duration, settings.users)
    print(f"{describe()}; model {model.name}; odd files from {settings.odd_files}\n{text}\nresults: {results}")
    (results / "soak.txt").write_text(text + "\n")
    (results / "soak.json").write_text(json.dumps(asdict(result), indent=2))
    (results / "memory.csv").write_text(
        "seconds,rss_mb\n" + "".join(f"{t:.1f},{rss / 2**20:.1f}\n" for t, rss in samples)
    )
    healthy = result.server_errors == 0 and alive and result.growth_second_half_mb <= settings.max_growth_mb
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
