"""A corpus of hostile and odd files, made here, for every entry point that accepts images.

Each item says what a correct service does with it: answer (``expect == "answer"``) or refuse
with one of the listed HTTP statuses and the core's reason code.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from helpers import make_image
from PIL import Image


@dataclass(frozen=True)
class CorpusFile:
    name: str
    data: bytes
    content_type: str
    #: "answer": a prediction is due; "refuse": a 4xx with ``reason``
    expect: str
    reason: str | None = None

    @property
    def status(self) -> int:
        return {"too_large": 413, "not_an_image": 415, "empty": 422, "truncated": 422}.get(self.reason or "", 200)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring 10 gigapixels, with a few bytes of data: tiny file, enormous image."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _broken_crc_png() -> bytes:
    data = bytearray(_encode(make_image("ai", 3, (64, 64)), "PNG"))
    data[29] ^= 0xFF  # inside the IHDR CRC
    return bytes(data)


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hello")
    return buffer.getvalue()


def _with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(make_image("real", 20 + orientation, (120, 80)), "JPEG", exif=exif, quality=90)


def _huge_exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: close to the 64 KiB APP1 limit
    exif[0x0112] = 6
    return _encode(make_image("real", 31, (200, 150)), "JPEG", exif=exif)


def _animated_gif() -> bytes:
    frames = [make_image("ai", i, (80, 80)).convert("P") for i in range(3)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _rgba_transparent() -> bytes:
    image = make_image("ai", 8, (96, 96)).convert("RGBA")
    alpha = np.zeros((96, 96), dtype=np.uint8)
    alpha[24:72, 24:72] = 255
    image.putalpha(Image.fromarray(alpha))
    return _encode(image, "PNG")


def _sixteen_bit_png() -> bytes:
    ramp = (np.linspace(0, 65535, 128 * 96).reshape(96, 128)).astype(np.uint16)
    return _encode(Image.fromarray(ramp), "PNG")  # uint16 -> mode I;16


def hostile_corpus() -> list[CorpusFile]:
    jpeg = _encode(make_image("real", 1, (400, 300)), "JPEG", quality=90)
    png = _encode(make_image("ai", 2, (200, 150)), "PNG")
    files = [
        CorpusFile("empty.jpg", b"", "image/jpeg", "refuse", "empty"),
        CorpusFile("few-bytes.jpg", b"\xff\xd8\xff", "image/jpeg", "refuse", "not_an_image"),
        CorpusFile("truncated.jpg", jpeg[: len(jpeg) // 3], "image/jpeg", "refuse", "truncated"),
        CorpusFile("truncated.png", png[: len(png) // 2], "image/png", "refuse", "truncated"),
        CorpusFile("broken-crc.png", _broken_crc_png(), "image/png", "refuse", "not_an_image"),
        CorpusFile("text.jpg", b"Just a note, not a picture.\n" * 20, "image/jpeg", "refuse", "not_an_image"),
        CorpusFile(
            "page.jpg", b"<!doctype html><html><body><h1>Hi</h1></body></html>", "image/jpeg", "refuse", "not_an_image"
        ),
        CorpusFile(
            "drawing.jpg",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
            "image/jpeg",
            "refuse",
            "not_an_image",
        ),
        CorpusFile(
            "document.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "image/jpeg", "refuse", "not_an_image"
        ),
        CorpusFile("archive.jpg", _zip_bytes(), "image/jpeg", "refuse", "not_an_image"),
        CorpusFile("random.jpg", np.random.default_rng(0).bytes(4096), "image/jpeg", "refuse", "not_an_image"),
        CorpusFile("bomb.png", _png_bomb(), "image/png", "refuse", "too_large"),
        CorpusFile("one-pixel.png", _encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), "image/png", "answer"),
        CorpusFile("wide.png", _encode(make_image("ai", 4, (8000, 8)), "PNG"), "image/png", "answer"),
        CorpusFile("tall.png", _encode(make_image("ai", 5, (8, 8000)), "PNG"), "image/png", "answer"),
        CorpusFile("cmyk.jpg", _encode(make_image("real", 6).convert("CMYK"), "JPEG"), "image/jpeg", "answer"),
        CorpusFile("sixteen-bit.png", _sixteen_bit_png(), "image/png", "answer"),
        CorpusFile("palette.png", _encode(make_image("ai", 7).convert("P"), "PNG"), "image/png", "answer"),
        CorpusFile("gray.jpg", _encode(make_image("real", 9).convert("L"), "JPEG"), "image/jpeg", "answer"),
        CorpusFile("transparent.png", _rgba_transparent(), "image/png", "answer"),
        CorpusFile("animated.gif", _animated_gif(), "image/gif", "answer"),
        CorpusFile("picture.webp", _encode(make_image("ai", 10), "WEBP"), "image/webp", "answer"),
        CorpusFile("picture.bmp", _encode(make_image("real", 11), "BMP"), "image/bmp", "answer"),
        CorpusFile("picture.tiff", _encode(make_image("real", 12), "TIFF"), "image/tiff", "answer"),
        CorpusFile("huge-exif.jpg", _huge_exif_jpeg(), "image/jpeg", "answer"),
        CorpusFile("trailing-garbage.jpg", jpeg + b"\x00garbage" * 100, "image/jpeg", "answer"),
        CorpusFile("lying-type.txt", png, "text/plain", "answer"),
        CorpusFile("lying-type.gif", jpeg, "image/gif", "answer"),
    ]
    files += [CorpusFile(f"orientation-{o}.jpg", _with_orientation(o), "image/jpeg", "answer") for o in range(1, 9)]
    return files


def write_corpus(folder: Path) -> list[Path]:
    """Every corpus file into ``folder`` under its own name (for make soak, or to try a server by hand)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for item in hostile_corpus():
        (folder / item.name).write_bytes(item.data)
        paths.append(folder / item.name)
    return paths


if __name__ == "__main__":  # python tests/corpus.py FOLDER
    import sys

    written = write_corpus(Path(sys.argv[1]))
    print(f"wrote {len(written)} files to {sys.argv[1]}")
