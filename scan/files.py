"""Which files a scan covers: named files as given, folders searched recursively for images."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from detector.preprocessing import list_images


def expand(inputs: list[Path], paths_from: Path | None = None) -> Iterator[str]:
    """Absolute paths, in a stable order, each once. A named file is scanned whatever its suffix."""
    seen: set[str] = set()
    named = list(inputs)
    if paths_from is not None:
        lines = sys.stdin if str(paths_from) == "-" else paths_from.open()
        named += [Path(line.strip()) for line in lines if line.strip()]
    for item in named:
        if item.is_dir():
            found = list_images(item)
        else:
            found = [item]
        for path in found:
            key = str(path.resolve())
            if key not in seen:
                seen.add(key)
                yield key
