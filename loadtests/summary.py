"""Locust's ``<prefix>_stats.csv`` turned into the few figures that matter, on one screen."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Summary:
    """The ``Aggregated`` row of a Locust run: throughput, latency percentiles (ms) and failures."""

    requests: int
    failures: int
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    average_ms: float
    max_ms: float

    @property
    def failure_share(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def format(self, title: str) -> str:
        return "\n".join(
            [
                title,
                f"  requests     {self.requests} ({self.failures} failed, {100 * self.failure_share:.1f} %)",
                f"  requests/s   {self.requests_per_second:.1f}",
                f"  latency ms   p50 {self.p50_ms:.0f}   p95 {self.p95_ms:.0f}   p99 {self.p99_ms:.0f}"
                f"   (mean {self.average_ms:.0f}, max {self.max_ms:.0f})",
            ]
        )


def _number(row: dict[str, str], column: str) -> float:
    value = row.get(column, "")
    return float(value) if value not in ("", "N/A") else 0.0


def read_summary(stats_csv: Path) -> Summary:
    """The ``Aggregated`` row of Locust's stats CSV (every request type together)."""
    with stats_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    aggregated = next((row for row in rows if row.get("Name") == "Aggregated"), None)
    if aggregated is None:
        raise ValueError(f"{stats_csv} has no Aggregated row: did Locust run?")
    return Summary(
        requests=int(_number(aggregated, "Request Count")),
        failures=int(_number(aggregated, "Failure Count")),
        requests_per_second=_number(aggregated, "Requests/s"),
        p50_ms=_number(aggregated, "50%"),
        p95_ms=_number(aggregated, "95%"),
        p99_ms=_number(aggregated, "99%"),
        average_ms=_number(aggregated, "Average Response Time"),
        max_ms=_number(aggregated, "Max Response Time"),
    )
