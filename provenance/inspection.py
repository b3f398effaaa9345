"""``inspect``: run every check on a file's bytes, each on its own and all within a time budget.

Metadata is attacker-controlled, so no check may take the caller down: each runs in its own
``try`` (a failure there means no evidence from it, logged), the file is refused above a size cap,
and the checks run in worker threads that the caller stops waiting for when the budget is spent
(a late check is reported as a neutral item, not awaited).  The heavy work (C2PA parsing in Rust,
OpenCV and wavelet transforms for the watermark) releases the GIL, so the checks overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from detector.preprocessing import DecodedImage
from provenance import camera, content_credentials, generators, metadata, watermark, xmp
from provenance.config import ProvenanceSettings, default_settings
from provenance.evidence import INSPECTION, NEUTRAL, Evidence

log = logging.getLogger(__name__)

#: ``(data, settings, decoded)``: the file's bytes, the settings, and the file as already decoded (or None)
Check = Callable[[bytes, ProvenanceSettings, DecodedImage | None], list[Evidence]]

#: shared by all callers; a check that overruns its budget keeps its thread until it returns
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="provenance")


def _content_credentials(
    data: bytes, settings: ProvenanceSettings, decoded: DecodedImage | None = None
) -> list[Evidence]:
    return content_credentials.check(data, settings.trust_anchors)


def _watermark(data: bytes, settings: ProvenanceSettings, decoded: DecodedImage | None = None) -> list[Evidence]:
    return watermark.check(data, settings.watermark_max_pixels, decoded) if settings.watermark else []


def _metadata(data: bytes, settings: ProvenanceSettings, decoded: DecodedImage | None = None) -> list[Evidence]:
    """The header-only checks share one parse of the header."""
    meta = metadata.read(data)
    if meta is None:
        return []
    found: list[Evidence] = []
    for reader in (generators.check, xmp.check, camera.check):
        found += _safely(reader.__module__, lambda m=meta, r=reader: r(m))
    return found


#: (what a person calls it, the check), in the order their evidence is listed
CHECKS: tuple[tuple[str, Check], ...] = (
    ("Content Credentials", _content_credentials),
    ("Stable Diffusion watermark", _watermark),
    ("file metadata", _metadata),
)


def inspect(
    data: bytes | bytearray | memoryview,
    settings: ProvenanceSettings | None = None,
    decoded: DecodedImage | None = None,
) -> list[Evidence]:
    """Every piece of provenance evidence in a file's bytes; never raises for a bad file.

    An empty list means the file says nothing about its origin (stripped, or never had any).
    ``decoded``: the same file as a caller already decoded it (:func:`detector.preprocessing.decode_image`,
    as the web app's model does); the checks that read pixels take them from it where its scale is the
    one they need (:func:`reads_pixels`), instead of decoding the file again. The evidence is the same.
    """
    settings = settings or default_settings()
    data = bytes(data)
    if not settings.enabled or not data:
        return []
    if len(data) > settings.max_bytes:
        return [Evidence(INSPECTION, f"File not inspected for provenance (over {settings.max_bytes:,} bytes)", NEUTRAL)]
    futures: list[tuple[str, Future[list[Evidence]]]] = [
        (name, _POOL.submit(_safely, name, lambda c=check: c(data, settings, decoded))) for name, check in CHECKS
    ]
    wait([future for _, future in futures], timeout=settings.time_budget)
    found: list[Evidence] = []
    for name, future in futures:
        if future.done():
            found += future.result()
        else:
            future.cancel()
            found.append(Evidence(INSPECTION, f"{name}: not checked within {settings.time_budget:g} s", NEUTRAL))
    return found


def reads_pixels(decoded: DecodedImage, settings: ProvenanceSettings | None = None) -> bool:
    """Whether :func:`inspect` may read this decoded image instead of decoding the file: worth keeping until it runs.

    Only the watermark check reads pixels, at full size or (4:2:0 JPEGs) at half scale, and only of files
    within its pixel cap; anything else a caller decoded is of no use here and need not be held.
    """
    settings = settings or default_settings()
    return settings.enabled and settings.watermark and watermark.reads(decoded, settings.watermark_max_pixels)


def _safely(name: str, check: Callable[[], list[Evidence]]) -> list[Evidence]:
    """A check's evidence, or none when it fails on this file (malformed metadata is not an error of ours)."""
    try:
        return list(check())
    except Exception as error:  # noqa: BLE001 - hostile metadata must never take the caller down
        log.info("provenance check %s failed on a file: %s: %s", name, type(error).__name__, error)
        return []
