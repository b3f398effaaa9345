"""One headless Locust run against one server: ``python -m loadtests.run`` (``make loadtest``).

Writes Locust's CSV files (``locust_stats.csv``, ``locust_stats_history.csv``, ``locust_failures.csv``,
``locust_exceptions.csv``) and ``summary.txt`` / ``summary.json`` (requests/s, p50/p95/p99 latency,
failures) into the output folder, and prints the summary. The exit status is Locust's: non-zero when
any request failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pydantic_settings import CliApp

from loadtests.config import ROOT, USER_CLASSES, LoadtestSettings, ScenarioSettings
from loadtests.images import ensure_images
from loadtests.summary import Summary, read_summary

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
CSV_PREFIX = "locust"


def run_locust(
    *,
    user_class: str,
    host: str,
    users: int,
    duration: str,
    output: Path,
    scenario: ScenarioSettings,
    spawn_rate: float | None = None,
) -> tuple[int, Summary]:
    """Run Locust headless in its own process; return its exit status and the run's summary.

    Locust runs as a separate process (as a user would run it) so that its gevent monkey-patching
    never reaches the caller, and so that its CPU use is visible as its own process.
    """
    output.mkdir(parents=True, exist_ok=True)
    ensure_images(scenario.images, scenario.image_count, scenario.seed)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate or users),
        "--run-time",
        duration,
        "--stop-timeout",
        "30",
        "--host",
        host,
        "--csv",
        str(output / CSV_PREFIX),
        "--only-summary",
        "--loglevel",
        "WARNING",
        user_class,
    ]
    env = {**os.environ, **scenario.to_env(), "PYTHONPATH": str(ROOT)}
    with (output / "locust.log").open("w") as log:
        status = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    stats = output / f"{CSV_PREFIX}_stats.csv"
    if not stats.is_file():
        log_tail = (output / "locust.log").read_text()[-3000:]
        raise RuntimeError(f"Locust wrote no statistics (exit status {status}):\n{log_tail}")
    return status, read_summary(stats)


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(LoadtestSettings, cli_args=argv)
    output = settings.output or ROOT / "runs" / "loadtests" / f"{settings.target}-{time.strftime('%Y%m%d-%H%M%S')}"
    status, summary = run_locust(
        user_class=USER_CLASSES[settings.target],
        host=settings.address,
        users=settings.users,
        spawn_rate=settings.spawn_rate,
        duration=settings.duration,
        output=output,
        scenario=settings,
    )
    title = f"{settings.target} at {settings.address}: {settings.users} users for {settings.duration}"
    text = summary.format(title)
    (output / "summary.txt").write_text(text + "\n")
    (output / "summary.json").write_text(summary.to_json() + "\n")
    print(text)
    print(f"  CSV and summary in {output}")
    return status


if __name__ == "__main__":
    sys.exit(main())
