"""Settings of the provenance checks, in one typed place: defaults, then ``DETECTOR_PROVENANCE_<NAME>`` variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from detector.settings import ToolSettings, tool_config


class ProvenanceSettings(ToolSettings):
    """How :func:`provenance.inspect` reads a file: limits, the watermark check, C2PA trust anchors."""

    model_config = tool_config("DETECTOR_PROVENANCE_", frozen=True)

    enabled: bool = Field(True, description="read provenance evidence beside the model's answer")
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="larger files are not inspected (one neutral item says so)"
    )
    time_budget: float = Field(
        5.0, gt=0, description="seconds all checks of one file may take together; late checks are reported, not awaited"
    )
    watermark: bool = Field(
        True,
        description="decode Stable Diffusion's invisible watermark (at full size, ~15-25 ms per megapixel, only where "
        "a mark can be: 4:2:0 JPEGs are read at half scale first)",
    )
    watermark_max_pixels: int = Field(
        2048 * 2048,
        ge=256 * 256,
        description="larger images are not decoded for the watermark (cost grows with pixels; SD outputs are smaller)",
    )
    trust_anchors: Path | None = Field(
        None,
        description="PEM file of C2PA trust anchors (root certificates); signers chaining to one count as trusted",
    )


@lru_cache(maxsize=1)
def default_settings() -> ProvenanceSettings:
    """The settings from the environment, read once per process."""
    return ProvenanceSettings()
