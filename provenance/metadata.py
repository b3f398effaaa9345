"""The metadata Pillow reads from a file's header without decoding its pixels: text chunks, EXIF, XMP."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any

from PIL import ExifTags, Image

#: TIFF tag 700 holds XMP in TIFF files
_XMP_TAG = 700


@dataclass(frozen=True)
class FileMetadata:
    """What a file says about itself, as read from its header."""

    format: str | None
    #: Pillow's ``info``: PNG tEXt/iTXt/zTXt chunks and other format-specific entries
    info: dict[str, Any] = field(default_factory=dict)
    #: the main EXIF directory (Make, Model, Software ...)
    exif: dict[int, Any] = field(default_factory=dict)
    #: the EXIF sub-directory (exposure, lens, UserComment ...)
    exif_ifd: dict[int, Any] = field(default_factory=dict)
    xmp: bytes = b""


def read(data: bytes) -> FileMetadata | None:
    """The file's metadata, or None when Pillow cannot open it (only the header is parsed)."""
    with warnings.catch_warnings():
        # Pillow warns about odd headers and EXIF (tags past the end, bomb sizes): expected in hostile files
        warnings.simplefilter("ignore")
        return _read(data)


def _read(data: bytes) -> FileMetadata | None:
    try:
        image = Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not an image Pillow knows, or a header it refuses (bombs included)
        return None
    with image:
        info = dict(image.info)
        exif: dict[int, Any] = {}
        exif_ifd: dict[int, Any] = {}
        try:
            parsed = _exif(image)
            exif = dict(parsed)
            exif_ifd = dict(parsed.get_ifd(ExifTags.IFD.Exif))
        except Exception:  # noqa: BLE001 - a corrupt EXIF block means no EXIF evidence, nothing worse
            pass
        xmp = info.get("xmp") or info.get("XML:com.adobe.xmp") or exif.get(_XMP_TAG) or b""
        return FileMetadata(
            format=image.format,
            info=info,
            exif=exif,
            exif_ifd=exif_ifd,
            xmp=xmp.encode("utf-8", "replace") if isinstance(xmp, str) else bytes(xmp),
        )


def _exif(image: Image.Image) -> Image.Exif:
    """The EXIF block, without decoding pixels: Pillow's PNG ``getexif`` decodes the whole image to look past IDAT."""
    if image.format != "PNG":
        return image.getexif()
    exif = Image.Exif()
    raw = image.info.get("exif")
    if raw:
        exif.load(raw)
    return exif


def text_value(value: object) -> str:
    """A metadata value as text: bytes decoded leniently, everything else through ``str``."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def user_comment(value: object) -> str:
    """EXIF UserComment: eight bytes naming the encoding, then the text (how A1111 stores its settings in JPEGs)."""
    if not isinstance(value, bytes | bytearray):
        return str(value or "")
    raw = bytes(value)
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\x00":
        # EXIF says UCS-2 in the file's byte order; writers disagree, so take the reading with fewer NULs
        readings = [body.decode(codec, errors="replace") for codec in ("utf-16-be", "utf-16-le")]
        return min(readings, key=lambda text: text.count("\x00") + text.count("\ufffd"))
    if prefix in (b"ASCII\x00\x00\x00", b"\x00" * 8):
        return body.decode("utf-8", errors="replace")
    return raw.decode("utf-8", errors="replace")
