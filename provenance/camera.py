"""EXIF fields: what camera took the picture, and what software wrote the file.

Camera fields point to ``real`` but are never strong: anyone can copy them into a generated image
(or strip them from a photo).  A ``Software`` field naming an image generator points to ``ai``,
also weakly: it is metadata, unsigned.
"""

from __future__ import annotations

from fractions import Fraction

from provenance.evidence import AI, CAMERA, NEUTRAL, REAL, SOFTWARE, Evidence, clean_text
from provenance.known import is_generator
from provenance.metadata import FileMetadata, text_value

MAKE, MODEL, SOFTWARE_TAG = 0x010F, 0x0110, 0x0131
EXPOSURE_TIME, F_NUMBER, ISO, FOCAL_LENGTH, LENS_MODEL, TAKEN = 0x829A, 0x829D, 0x8827, 0x920A, 0xA434, 0x9003


def check(meta: FileMetadata) -> list[Evidence]:
    """Camera metadata (weak ``real``) and the writing software (weak ``ai`` when it is a generator)."""
    found: list[Evidence] = []
    camera = _camera(meta)
    if camera is not None:
        found.append(camera)
    software = meta.exif.get(SOFTWARE_TAG) or meta.info.get("Software")
    if software:
        name = clean_text(text_value(software), 60)
        if is_generator(name):
            found.append(Evidence(SOFTWARE, f"Software field names an image generator: {name}", AI))
        elif camera is None and name:
            found.append(Evidence(SOFTWARE, f"Software field: {name}", NEUTRAL))
    return found


def _camera(meta: FileMetadata) -> Evidence | None:
    make = clean_text(text_value(meta.exif.get(MAKE, "")), 30)
    model = clean_text(text_value(meta.exif.get(MODEL, "")), 40)
    if not (make or model):
        return None
    body = model if make and model.lower().startswith(make.lower().split()[0]) else f"{make} {model}".strip()
    parts = [body]
    lens = clean_text(text_value(meta.exif_ifd.get(LENS_MODEL, "")), 40)
    if lens:
        parts.append(lens)
    for tag, show in ((EXPOSURE_TIME, _exposure), (F_NUMBER, _f_number), (ISO, _iso), (FOCAL_LENGTH, _focal)):
        if tag in meta.exif_ifd:
            try:
                parts.append(show(meta.exif_ifd[tag]))
            except (TypeError, ValueError, ZeroDivisionError, OverflowError):
                continue
    if TAKEN in meta.exif_ifd:
        parts.append(f"taken {clean_text(text_value(meta.exif_ifd[TAKEN]), 19)}")
    return Evidence(CAMERA, "Camera metadata: " + " · ".join(parts) + " (easy to forge or strip; never decides)", REAL)


def _number(value: object) -> float:
    if isinstance(value, tuple | list):
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def _exposure(value: object) -> str:
    seconds = _number(value)
    if 0 < seconds < 1:
        return f"1/{round(1 / seconds)} s"
    return f"{Fraction(seconds).limit_denominator(10)} s"


def _f_number(value: object) -> str:
    return f"f/{_number(value):g}"


def _iso(value: object) -> str:
    return f"ISO {int(_number(value))}"


def _focal(value: object) -> str:
    return f"{_number(value):g} mm"
