"""Report files: CSV and JSON Lines written as the scan goes (so a stopped scan resumes), and an HTML review page."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from detector.preprocessing import load_image
from scan.scoring import COLUMNS, ScanRow

FORMATS = ("csv", "jsonl")


def report_paths(prefix: Path, formats: Iterable[str]) -> dict[str, Path]:
    """Each format's report file: ``<prefix>.csv``, ``<prefix>.jsonl``."""
    return {fmt: prefix.with_name(prefix.name + f".{fmt}") for fmt in formats}


class ReportWriter:
    """Appends rows to ``<prefix>.csv`` and/or ``<prefix>.jsonl``, flushing after every batch.

    With ``resume=False`` the files start afresh (truncated) instead of growing.
    """

    def __init__(self, prefix: Path, formats: Iterable[str], resume: bool = True) -> None:
        self.paths = report_paths(prefix, formats)
        self.prefix = prefix
        prefix.parent.mkdir(parents=True, exist_ok=True)
        self._files = {}
        for fmt, path in self.paths.items():
            new = not resume or not path.exists() or path.stat().st_size == 0
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


def read_rows(report: Path) -> list[ScanRow]:
    """All rows of a JSONL or CSV report (the HTML page and the summary are made from it)."""
    with report.open(newline="") as handle:
        if report.suffix == ".jsonl":
            return [ScanRow(**json.loads(line)) for line in handle if line.strip()]
        return [_from_csv(row) for row in csv.DictReader(handle)]


def _from_csv(row: dict[str, str]) -> ScanRow:
    probabilities = {name: float(row[f"prob_{name}"]) for name in ("ai", "real") if row[f"prob_{name}"]}
    return ScanRow(
        path=row["path"],
        label=row["label"] or None,
        confidence=float(row["confidence"]) if row["confidence"] else None,
        probabilities=probabilities,
        evidence=row["evidence"],
        model_version=row["model_version"],
        error=row["error"] or None,
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


def write_html(rows: list[ScanRow], destination: Path, limit: int = 500) -> Path:
    """A self-contained page for a person to review: likeliest-AI first, with thumbnails, errors last."""
    answered = sorted((r for r in rows if r.error is None), key=lambda r: -(r.probabilities.get("ai") or 0.0))
    shown = answered[:limit]
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"])
    )
    page = environment.get_template("report.html").render(
        rows=[(row, _thumbnail(row.path)) for row in shown],
        errors=[r for r in rows if r.error is not None],
        summary=summarise(rows),
        hidden=len(answered) - len(shown),
    )
    destination.write_text(page)
    return destination
