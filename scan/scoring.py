"""Turning files into report rows: shared by the command-line scanner and the Ray Data pipeline.

Decoding happens per file (in worker threads or Ray tasks); scoring happens per batch, in one
forward pass over every file of the batch that decoded.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from detector.calibration import decide
from detector.preprocessing import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageSource
from detector.runtimes import Detector
from provenance import Evidence, ProvenanceSettings, combine, inspect

#: report columns, in order
COLUMNS = ("path", "label", "confidence", "prob_ai", "prob_real", "evidence", "model_version", "error")


@dataclass
class ScanRow:
    path: str
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    #: provenance evidence summary (C2PA, SD watermark, generator settings, EXIF/XMP): provenance.Verdict.summary
    evidence: str = ""
    model_version: str = ""
    error: str | None = None

    def flat(self) -> dict[str, Any]:
        """One CSV/Parquet row: probabilities as their own columns."""
        return {
            "path": self.path,
            "label": self.label,
            "confidence": self.confidence,
            "prob_ai": self.probabilities.get("ai"),
            "prob_real": self.probabilities.get("real"),
            "evidence": self.evidence,
            "model_version": self.model_version,
            "error": self.error,
        }

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


Decoded = np.ndarray | ImageDecodeError | OSError


def decode(detector: Detector, source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """The model input for one file, or the reason it has none (never raises for a bad file)."""
    try:
        return detector.preprocess(source, max_pixels=max_pixels)
    except (ImageDecodeError, OSError) as error:
        return error


def _read(source: ImageSource, limit: int) -> bytes:
    """At most ``limit`` bytes of a file given by path, as bytes, or as an open binary file."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return handle.read(limit)
    return source.read(limit)


def prepare(
    detector: Detector, source: ImageSource, max_pixels: int, provenance: ProvenanceSettings | None
) -> tuple[Decoded, list[Evidence]]:
    """One file's model input (or the reason it has none) and, when ``provenance`` is given, its evidence.

    With evidence on, the file is read once and both the model and the provenance checks take its
    bytes; a file over the provenance size cap is decoded from its source instead (the checks refuse it).
    """
    if provenance is None:
        return decode(detector, source, max_pixels), []
    try:
        data = _read(source, provenance.max_bytes + 1)
    except OSError as error:
        return error, []
    whole = len(data) <= provenance.max_bytes
    return decode(detector, data if whole else source, max_pixels), inspect(data, provenance)


def score(
    detector: Detector,
    paths: list[str],
    decoded: list[Decoded],
    threshold: float | None = None,
    evidence: list[list[Evidence]] | None = None,
) -> list[ScanRow]:
    """Rows for a batch: one forward pass over the files that decoded, an error row for the others.

    With ``evidence`` (one list per file), the evidence column says what the file itself shows and
    whether it decided the verdict (``provenance.combine``); ``label`` stays the model's.
    """
    good = [i for i, item in enumerate(decoded) if isinstance(item, np.ndarray)]
    rows = [ScanRow(path=path, model_version=detector.version) for path in paths]
    found = evidence or [[] for _ in paths]
    if good:
        probabilities = detector.probabilities(np.stack([decoded[i] for i in good]))
        cut = detector.metadata.threshold if threshold is None else threshold
        for i, decision in zip(good, decide(probabilities, detector.metadata.classes, cut), strict=True):
            rows[i].label = decision.label
            rows[i].confidence = round(decision.confidence, 6)
            rows[i].probabilities = {k: round(v, 6) for k, v in decision.probabilities.items()}
            rows[i].evidence = combine(found[i], decision).summary()
    for i, item in enumerate(decoded):
        if not isinstance(item, np.ndarray):
            rows[i].error = str(item) if isinstance(item, ImageDecodeError) else f"unreadable: {item}"
            rows[i].evidence = " | ".join(item.summary() for item in found[i])
    return rows
