"""Turning files into report rows: shared by the command-line scanner and the Ray Data pipeline.

Decoding happens per file (in worker threads or Ray tasks); scoring happens per batch, in one
forward pass over every file of the batch that decoded (and, with the consistency check, one more
over all their re-encoded variants).

A row carries the same verdict as every other surface (web app, TorchServe): ``label`` (``ai``,
``real`` or ``unsure``), ``p_ai`` (the calibrated P(ai), the one number shown with a verdict),
``summary`` (``P(AI) 38 %: unsure``) and ``reason`` when something other than the thresholds
decided it (the consistency check).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from detector.calibration import Decision, calibrated_probabilities, decide
from detector.consistency import reconcile, variant_arrays
from detector.heatmap import overlay
from detector.preprocessing import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    ImageDecodeError,
    ImageSource,
    load_image,
    preprocess_decoded,
)
from detector.runtimes import Detector
from provenance import Evidence, ProvenanceSettings, combine, inspect, reads_pixels

#: report columns, in order
COLUMNS = ("path", "label", "p_ai", "summary", "reason", "evidence", "heatmap", "model_version", "error")

#: longest side of a heatmap overlay written by ``--explain``
HEATMAP_SIZE = 512


@dataclass
class ScanRow:
    path: str
    #: ``ai``, ``real`` or ``unsure``
    label: str | None = None
    #: calibrated P(ai): the number that goes with the verdict
    p_ai: float | None = None
    #: ``P(AI) 38 %: unsure``, as every surface words it
    summary: str | None = None
    #: why the verdict is what it is when the thresholds alone did not decide it (the consistency check)
    reason: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    #: provenance evidence summary (C2PA, SD watermark, generator settings, EXIF/XMP): provenance.Verdict.summary
    evidence: str = ""
    #: the heatmap overlay PNG written for this file (``--explain``)
    heatmap: str | None = None
    model_version: str = ""
    error: str | None = None

    def flat(self) -> dict[str, Any]:
        """One CSV/Parquet row (the probabilities are ``p_ai`` and its complement; JSON keeps them all)."""
        values = asdict(self)
        return {column: values[column] for column in COLUMNS}

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> ScanRow:
        """A row read back from a report; keys this version does not know are ignored.

        A row written before the three verdicts (``confidence``, no ``p_ai``) gets its P(ai) and summary
        from its probabilities, so a report resumed across versions still reads as one.
        """
        known = {f.name for f in fields(cls)}
        row = cls(**{key: value for key, value in values.items() if key in known})
        if row.p_ai is None and row.label is not None and "ai" in row.probabilities:
            row.p_ai = row.probabilities["ai"]
            row.summary = Decision(row.label, row.p_ai, row.probabilities).summary
        return row


#: one file's model input, or the reason it has none. On the GPU path (a detector with a device preprocessor,
#: :class:`detector.runtimes.torch_cuda.CudaDetector`) the input is first the file staged for the device
#: decoder (:func:`decode`), then its row of the batch decoded on the device (:func:`on_device`)
Decoded = np.ndarray | ImageDecodeError | OSError | Any


def decode(detector: Detector, source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """The model input for one file, or the reason it has none (never raises for a bad file).

    On the GPU path the file is read and checked from its header here, and decoded with its batch on the device.
    """
    device = getattr(detector, "preprocessor", None)
    if device is not None:
        return device.stage(source, max_pixels=max_pixels)
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
    The model's decode of the file is handed to the checks where they read those pixels
    (:func:`provenance.reads_pixels`), so that they need not decode it again; the evidence is the same.
    """
    if provenance is None:
        return decode(detector, source, max_pixels), []
    try:
        data = _read(source, provenance.max_bytes + 1)
    except OSError as error:
        return error, []
    if len(data) > provenance.max_bytes:
        return decode(detector, source, max_pixels), inspect(data, provenance)
    item, pixels = _decode_for_evidence(detector, data, max_pixels, provenance)
    return item, inspect(data, provenance, pixels)


def _decode_for_evidence(
    detector: Detector, data: bytes, max_pixels: int, provenance: ProvenanceSettings
) -> tuple[Decoded, DecodedImage | None]:
    """:func:`decode`, and the decoded image where the provenance checks read it (else None: not kept).

    The GPU path decodes on the device, later and in batches: nothing to hand on.
    """
    if getattr(detector, "preprocessor", None) is not None:
        return decode(detector, data, max_pixels), None
    try:
        array, decoded = preprocess_decoded(data, detector.preprocess_config, max_pixels=max_pixels)
    except (ImageDecodeError, OSError) as error:
        return error, None
    return array, decoded if reads_pixels(decoded, provenance) else None


def failed(item: Decoded) -> bool:
    """Whether a file's decoding gave the reason it has no model input instead of one."""
    return isinstance(item, ImageDecodeError | OSError)


def on_device(detector: Detector, decoded: list[Decoded], max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Decoded]:
    """On the GPU path, a batch's staged files decoded together on the device (nvJPEG), each its row or refusal.

    Other detectors' inputs are returned as they are.
    """
    device = getattr(detector, "preprocessor", None)
    return decoded if device is None else device.batch(decoded, max_pixels=max_pixels).rows()


def variants(detector: Detector, source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | None:
    """The model inputs of the consistency check's variants of one file; None when it cannot be decoded."""
    try:
        return variant_arrays(detector, source, max_pixels=max_pixels)
    except (ImageDecodeError, OSError):
        return None


def heatmap_name(path: str) -> str:
    """The overlay's file name: the image's stem and a digest of its whole path (two ``a.jpg`` stay apart)."""
    digest = hashlib.sha256(path.encode()).hexdigest()[:12]
    return f"{Path(path).stem}-{digest}.png"


def write_heatmap(path: str, cam: np.ndarray, folder: Path, size: int = HEATMAP_SIZE) -> str | None:
    """The image at ``path`` (at most ``size`` px a side) with its heatmap over it, as PNG in ``folder``.

    Returns the PNG's path, or None when the file cannot be decoded again (changed since it was scored).
    """
    try:
        image = load_image(path, draft_size=size)
    except (ImageDecodeError, OSError):
        return None
    image.thumbnail((size, size))
    destination = folder / heatmap_name(path)
    overlay(image, cam).save(destination, format="PNG")
    return str(destination.resolve())


def score(
    detector: Detector,
    paths: list[str],
    decoded: list[Decoded],
    threshold: float | None = None,
    evidence: list[list[Evidence]] | None = None,
    *,
    real_threshold: float | None = None,
    checks: list[np.ndarray | None] | None = None,
    explain: Path | None = None,
) -> list[ScanRow]:
    """Rows for a batch: one forward pass over the files that decoded, an error row for the others.

    ``threshold`` and ``real_threshold`` replace the model's (``ai`` from ``threshold`` up, ``real`` at
    or below ``real_threshold``, ``unsure`` between; an override of one keeps the model's other).
    With ``evidence`` (one list per file), the evidence column says what the file itself shows and
    whether it decided the verdict (``provenance.combine``); ``label`` stays the model's.
    With ``checks`` (each file's :func:`variants`), a verdict that a variant flips becomes ``unsure``
    with a reason (:func:`detector.consistency.reconcile`). With ``explain``, the forward pass also
    gives the class activation map and each file's overlay is written into that folder.
    """
    good = [i for i, item in enumerate(decoded) if not failed(item)]
    rows = [ScanRow(path=path, model_version=detector.version) for path in paths]
    found = evidence or [[] for _ in paths]
    if good:
        meta = detector.metadata
        cut = meta.threshold if threshold is None else threshold
        real_cut = meta.real_threshold if real_threshold is None else real_threshold

        def decisions(probabilities: np.ndarray) -> list[Decision]:
            return decide(probabilities, meta.classes, cut, real_cut)

        batch = _stack([decoded[i] for i in good])
        if explain is None:
            answers, cams = decisions(detector.probabilities(batch)), None
        else:
            logits, cams = detector.logits_and_cam(batch)
            answers = decisions(calibrated_probabilities(logits, meta.temperature))
        if checks is not None:
            answers = _reconciled(detector, answers, [checks[i] for i in good], decisions)
        for position, (i, decision) in enumerate(zip(good, answers, strict=True)):
            row = rows[i]
            row.label, row.p_ai, row.summary = decision.label, round(decision.p_ai, 6), decision.summary
            row.reason = decision.reason
            row.probabilities = {k: round(v, 6) for k, v in decision.probabilities.items()}
            row.evidence = combine(found[i], decision).summary()
            if cams is not None and explain is not None:
                row.heatmap = write_heatmap(row.path, cams[position], explain)
    for i, item in enumerate(decoded):
        if failed(item):
            rows[i].error = str(item) if isinstance(item, ImageDecodeError) else f"unreadable: {item}"
            rows[i].evidence = " | ".join(item.summary() for item in found[i])
    return rows


def _stack(inputs: list[Any]) -> Any:
    """The batch: NumPy inputs stacked; the GPU path's rows (torch tensors on the device) stacked where they are."""
    if isinstance(inputs[0], np.ndarray):
        return np.stack(inputs)
    import torch  # only the GPU path gets here, and it has torch

    return torch.stack(inputs)


def _reconciled(
    detector: Detector,
    answers: list[Decision],
    checks: list[np.ndarray | None],
    decisions: Callable[[np.ndarray], list[Decision]],
) -> list[Decision]:
    """Each decision reconciled with its variants', all variants of the batch in one forward pass."""
    checked = [i for i, arrays in enumerate(checks) if arrays is not None]
    if not checked:
        return answers
    stacked = np.concatenate([checks[i] for i in checked])
    scored = decisions(detector.probabilities(stacked))
    per_image = len(scored) // len(checked)
    result = list(answers)
    for n, i in enumerate(checked):
        result[i] = reconcile(answers[i], scored[n * per_image : (n + 1) * per_image])
    return result
