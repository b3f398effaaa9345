"""What the file itself says about its origin: one :class:`Evidence` item per finding.

Each item says which way it points (``ai``, ``real`` or ``neutral``) and whether it is *strong*:
strong evidence decides the verdict on its own (see :mod:`provenance.verdict`); the rest is shown
beside the model's answer and never overrides it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from detector.labels import AI, REAL

NEUTRAL: Final = "neutral"
PointsTo = Literal["ai", "real", "neutral"]

# Evidence kinds: stable machine-readable codes (the ``finding`` is the sentence for people).
C2PA: Final = "c2pa"
SD_WATERMARK: Final = "sd_watermark"
GENERATOR_PARAMETERS: Final = "generator_parameters"
SOFTWARE: Final = "software"
SOURCE_TYPE: Final = "digital_source_type"
CAMERA: Final = "camera_metadata"
INSPECTION: Final = "inspection"

__all__ = ["AI", "REAL", "NEUTRAL", "Evidence", "PointsTo", "clean_text"]


@dataclass(frozen=True)
class Evidence:
    """One finding in a file's bytes, with the direction it points and whether it decides."""

    kind: str
    #: a short sentence fit to show a person, with any text taken from the file cleaned and shortened
    finding: str
    points_to: PointsTo
    #: strong evidence decides the verdict; weak evidence is only shown
    strong: bool = False

    def __post_init__(self) -> None:
        if self.points_to not in (AI, REAL, NEUTRAL):
            raise ValueError(f"points_to must be ai, real or neutral, not {self.points_to!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: ``{kind, finding, points_to, strong}``."""
        return asdict(self)

    def summary(self) -> str:
        """One line for reports: the finding and its direction, e.g. ``... [ai, strong]``."""
        tags = self.points_to + (", strong" if self.strong else "")
        return f"{self.finding} [{tags}]"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def clean_text(value: object, limit: int = 80) -> str:
    """Text read from a file made safe to show: decoded, control characters collapsed, shortened.

    Metadata is attacker-controlled: it may be bytes in any encoding, megabytes long, or full of
    terminal escapes.  Escaping for HTML is left to the page's template engine.
    """
    if isinstance(value, bytes | bytearray):
        value = bytes(value[: limit * 4]).decode("utf-8", errors="replace")
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
