"""Copy a per-source sample of a manifest data set into a folder: ``python -m training.pack``.

A GPU machine lent for an hour reaches no data set and takes at most about 64 MiB with it; the
source-fold comparison (``training.crossval``) needs every source, not every image.  This takes
up to ``--per-group`` images of each (source, label), the same ones for the same seed, and writes
them with a manifest (``path,label,source,generator``) that ``training.crossval`` reads.
"""

from __future__ import annotations

import csv
import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

from pydantic import Field

from detector.settings import run_cli, tool_config
from training.config import _Settings

COLUMNS = ("path", "label", "source", "generator")


class PackSettings(_Settings):
    model_config = tool_config(prog="python -m training.pack")

    manifest: Path = Field(description="the data set's manifest.csv (path,label,source,...)")
    output: Path = Field(description="folder to write the sample and its manifest.csv into")
    per_group: int = Field(75, ge=1, description="at most this many images of each (source, label)")
    seed: int = Field(0, description="seed of the draw")


def pack(settings: PackSettings) -> int:
    """Write the sample; return how many images it holds."""
    with settings.manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = set(COLUMNS) - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{settings.manifest} lacks columns {sorted(missing)}")
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        groups[(row["source"], row["label"])].append(row)
    draw = random.Random(settings.seed)
    kept = []
    for _, members in sorted(groups.items()):
        members = sorted(members, key=lambda r: r["path"])
        kept += sorted(draw.sample(members, min(settings.per_group, len(members))), key=lambda r: r["path"])
    settings.output.mkdir(parents=True, exist_ok=True)
    with (settings.output / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in kept:
            destination = settings.output / row["path"]
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(settings.manifest.parent / row["path"], destination)
            writer.writerow(row)
    return len(kept)


def main(argv: list[str] | None = None) -> int:
    return run_cli(PackSettings, _pack_and_report, argv)


def _pack_and_report(settings: PackSettings) -> None:
    print(f"{pack(settings)} images in {settings.output}")


if __name__ == "__main__":
    sys.exit(main())
