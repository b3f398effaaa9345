"""The images the load tests send: every file of a folder, read into memory once, drawn at random.

When the folder is empty or missing it is filled with real-photo JPEGs from the scanner benchmark's
generator (matplotlib's photograph of Grace Hopper, cropped, resized to 640x480 .. 4000x3000 and
re-encoded), so decoding costs the servers what camera files cost them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from detector.preprocessing import list_images


def ensure_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """The folder's images, generating ``count`` photos first when it holds none."""
    files = list_images(folder)
    if not files:
        from scan.benchmark import make_folder

        make_folder(folder, count, seed)
        files = list_images(folder)
    return files


@dataclass
class ImagePool:
    """Image bytes held in memory (a load generator must not measure its own disk), drawn at random."""

    images: list[tuple[str, bytes]]
    rng: random.Random

    @classmethod
    def from_folder(cls, folder: Path, count: int = 20, seed: int = 0) -> ImagePool:
        files = ensure_images(folder, count, seed)
        return cls([(path.name, path.read_bytes()) for path in files], random.Random(seed))

    @classmethod
    def from_any_files(cls, folder: Path, seed: int = 0) -> ImagePool:
        """Every file of ``folder``, whatever its name or content (the soak's odd and hostile files)."""
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        if not files:
            raise FileNotFoundError(f"no files in {folder}")
        return cls([(path.name, path.read_bytes()) for path in files], random.Random(seed))

    def pick(self) -> tuple[str, bytes]:
        return self.rng.choice(self.images)
