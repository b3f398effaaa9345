"""Provenance evidence beside the model's answer: each answered file's bytes through ``provenance``.

The checks run in worker threads, all files of a request at once; each file's checks are bounded
by the provenance time budget (``DETECTOR_PROVENANCE_TIME_BUDGET``), so a hostile file delays its
request by that much at worst and never fails it.  Where the model's preprocessing already decoded
a file at the scale a check reads (``Prediction.decoded``), the check reads those pixels instead of
decoding the file again.
"""

from __future__ import annotations

from typing import Literal

import anyio
from pydantic import BaseModel

from detector.preprocessing import DecodedImage
from provenance import ProvenanceSettings, Verdict, combine, inspect


class EvidenceItem(BaseModel):
    """One finding in the file (``provenance.Evidence``)."""

    kind: str
    finding: str
    points_to: Literal["ai", "real", "neutral"]
    strong: bool


async def weigh(files: list[tuple[bytes, str, DecodedImage | None]], settings: ProvenanceSettings) -> list[Verdict]:
    """The verdict for each ``(bytes, model label, decoded or None)``: strong evidence decides, otherwise the model."""
    verdicts: list[Verdict | None] = [None] * len(files)

    async def one(index: int, data: bytes, label: str, decoded: DecodedImage | None) -> None:
        evidence = await anyio.to_thread.run_sync(inspect, data, settings, decoded) if settings.enabled else []
        verdicts[index] = combine(evidence, label)

    async with anyio.create_task_group() as group:
        for index, (data, label, decoded) in enumerate(files):
            group.start_soon(one, index, data, label, decoded)
    return [verdict for verdict in verdicts if verdict is not None]
