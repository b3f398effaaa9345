"""``make setup`` / ``make test`` install for minutes on a fresh machine: pip must say what it is doing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_big_install_shows_progress() -> None:
    """The stamp rule's recipe (printed, not run: -n), with every target out of date (-B)."""
    make = shutil.which("make") or "make"
    recipe = subprocess.run(
        [make, "-s", "-n", "-B", ".venv/.installed"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    install = next(line for line in recipe.splitlines() if "-r requirements-dev.txt" in line)
    assert "--quiet" not in install and " -q " not in install, install
