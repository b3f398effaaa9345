"""Report files: CSV and JSON Lines written as the scan goes (so a stopped scan resumes), and an HTML review page."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape

from detector.preprocessing import load_image
from scan.scoring import COLUMNS, ScanRow

FORMATS = ("csv", "jsonl")


class OutdatedReport(ValueError):
    """A CSV report to resume whose columns are not this version's (rows appended to it would not line up)."""


def report_paths(prefix: Path, formats: Iterable[str]) -> dict[str, Path]:
    """Each format's report file: ``<prefix>.csv``, ``<prefix>.jsonl``."""
    return {fmt: prefix.with_name(prefix.name + f".{fmt}") for fmt in formats}


class ReportWriter:
    """Appends rows to ``<prefix>.csv`` and/or ``<prefix>.jsonl``, flushing after every batch.

    With ``resume=False`` the files start afresh (truncated) instead of growing. Resuming a CSV written
    with other columns (by an earlier version) raises :class:`OutdatedReport` before anything is written.
    """

    def __init__(self, prefix: Path, formats: Iterable[str], resume: bool = True) -> None:
        self.paths = report_paths(prefix, formats)
        self.prefix = prefix
        prefix.parent.mkdir(parents=True, exist_ok=True)
        self._files = {}
        fresh = {fmt: not resume or not path.exists() or path.stat().st_size == 0 for fmt, path in self.paths.items()}
        if "csv" in self.paths and not fresh["csv"]:
            _check_columns(self.paths["csv"])
        for fmt, path in self.paths.items():
            new = fresh[fmt]
            handle = path.open("a" if resume else "w", newline="")
            if fmt == "csv":
                writer = csv.DictWriter(handle, fieldnames=COLUMNS)
                if new:
                    writer.writeheader()
                self._csv = writer
            self._files[fmt] = handle

    @property
    def main_report(self) -> Path:
        """The report read back for resuming and summaries: the JSONL when written, else the CSV."""
        return self.paths.get("jsonl") or self.paths["csv"]

    def rows(self) -> list[ScanRow]:
        return read_rows(self.main_report) if self.main_report.exists() else []

    def write(self, rows: list[ScanRow]) -> None:
        for fmt, handle in self._files.items():
            if fmt == "csv":
                self._csv.writerows(row.flat() for row in rows)
            else:
                handle.writelines(json.dumps(row.as_json()) + "\n" for row in rows)
            handle.flush()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


def _check_columns(path: Path) -> None:
    with path.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    if tuple(header) != COLUMNS:
        raise OutdatedReport(
            f"{path} has the columns of an earlier version ({', '.join(header)}): "
            "start it afresh with --no-resume, or write to another --output"
        )


def read_rows(report: Path) -> list[ScanRow]:
    """All rows of a JSONL or CSV report (the HTML page and the summary are made from it)."""
    with report.open(newline="") as handle:
        if report.suffix == ".jsonl":
            return [ScanRow.from_json(json.loads(line)) for line in handle if line.strip()]
        return [_from_csv(row) for row in csv.DictReader(handle)]


def _from_csv(row: dict[str, str]) -> ScanRow:
    """A CSV row back as a :class:`ScanRow` (without the probabilities, which only the JSONL keeps)."""
    return ScanRow(
        path=row["path"],
        label=row.get("label") or None,
        p_ai=float(row["p_ai"]) if row.get("p_ai") else None,
        summary=row.get("summary") or None,
        reason=row.get("reason") or None,
        evidence=row.get("evidence", ""),
        heatmap=row.get("heatmap") or None,
        model_version=row.get("model_version", ""),
        error=row.get("error") or None,
    )


def summarise(rows: list[ScanRow]) -> dict[str, int]:
    counts = Counter(row.label if row.error is None else "error" for row in rows)
    return {"images": len(rows), **{key: counts[key] for key in sorted(counts)}}


def _thumbnail(path: str, size: int = 160) -> str | None:
    try:
        image = load_image(path, draft_size=size)
    except Exception:  # noqa: BLE001 - a file that changed since the scan just gets no thumbnail
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _link(target: str | None, page: Path) -> str | None:
    """A relative URL from the page to a file written beside it (the heatmaps of ``--explain``)."""
    if not target:
        return None
    return quote(Path(os.path.relpath(target, page.resolve().parent)).as_posix())


def write_html(rows: list[ScanRow], destination: Path, limit: int = 500) -> Path:
    """A page for a person to review: likeliest-AI first, with thumbnails, heatmaps when made, errors last.

    Self-contained but for the heatmaps, which are linked by their path relative to the page.
    """
    answered = sorted((r for r in rows if r.error is None), key=lambda r: -(r.p_ai or 0.0))
    shown = answered[:limit]
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"])
    )
    page = environment.get_template("report.html").render(
        rows=[(row, _thumbnail(row.path), _link(row.heatmap, destination)) for row in shown],
        heatmaps=any(row.heatmap for row in shown),
        errors=[r for r in rows if r.error is not None],
        summary=summarise(rows),
        hidden=len(answered) - len(shown),
    )
    destination.write_text(page)
    return destination
