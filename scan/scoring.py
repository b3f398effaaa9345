"""Turning files into report rows: shared by the command-line scanner and the Ray Data pipeline.

Decoding happens per file (in worker threads or Ray tasks); scoring happens per batch, in one
forward pass over every file of the batch that decoded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from detector.calibration import decide
from detector.preprocessing import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageSource
from detector.torch_runtime import Detector

#: report columns, in order
COLUMNS = ("path", "label", "confidence", "prob_ai", "prob_real", "evidence", "model_version", "error")


@dataclass
class ScanRow:
    path: str
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    #: provenance evidence summary (C2PA, watermarks, metadata): filled once that feature lands
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


def score(
    detector: Detector, paths: list[str], decoded: list[Decoded], threshold: float | None = None
) -> list[ScanRow]:
    """Rows for a batch: one forward pass over the files that decoded, an error row for the others."""
    good = [i for i, item in enumerate(decoded) if isinstance(item, np.ndarray)]
    rows = [ScanRow(path=path, model_version=detector.version) for path in paths]
    if good:
        probabilities = detector.probabilities(np.stack([decoded[i] for i in good]))
        cut = detector.metadata.threshold if threshold is None else threshold
        for i, decision in zip(good, decide(probabilities, detector.metadata.classes, cut), strict=True):
            rows[i].label = decision.label
            rows[i].confidence = round(decision.confidence, 6)
            rows[i].probabilities = {k: round(v, 6) for k, v in decision.probabilities.items()}
    for i, item in enumerate(decoded):
        if not isinstance(item, np.ndarray):
            rows[i].error = str(item) if isinstance(item, ImageDecodeError) else f"unreadable: {item}"
    return rows
