"""A Python with only what issue #14's GPU machine has, for running ``make bench-gpu``'s script as it would run there.

The issue asks that the script run on a GPU machine that has torch with CUDA, torchvision, timm, numpy and
Pillow (and what those depend on), no package registry, and whatever wheels are carried along
(``GPU_WHEEL_NEEDS`` in the Makefile). The machines this project borrows have much more (matplotlib,
scikit-learn, pytest...: the device library's KINDS.md), but a GPU machine elsewhere need not, and an import
it lacks fails only after the machine's start-up. The script needed matplotlib for its photos until
2026-11-28. :func:`gpu_image_python` makes a virtual environment beside the tests whose site-packages holds
links to exactly those distributions of this machine's ``.venv``, so the script meets the same absences here.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the distributions the issue names for its GPU machine
IMAGE = ("torch", "torchvision", "timm", "numpy", "pillow")


def _name(requirement: str) -> str:
    """A distribution's normalised name (PEP 503), from a name or a requirement line."""
    return re.sub(r"[-_.]+", "-", re.split(r"[ ;<>=!~\[(]", requirement.strip(), maxsplit=1)[0]).lower()


def carried_wheels() -> list[str]:
    """The distributions ``make gpu-wheels`` downloads to carry along (the Makefile's ``GPU_WHEEL_NEEDS``)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    needs = re.search(r"^GPU_WHEEL_NEEDS\s*:?=(.*)$", text, re.MULTILINE)
    assert needs is not None, "GPU_WHEEL_NEEDS is missing from the Makefile"
    return [_name(pin) for pin in needs.group(1).split()]


def _with_dependencies(names: list[str]) -> set[str]:
    """The names and everything they require (extras left out), as installed here."""
    found: set[str] = set()
    todo = [_name(name) for name in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.add(name)
        todo += [_name(line) for line in distribution.requires or [] if "extra ==" not in line]
    return found


def gpu_image_python(folder: Path) -> Path:
    """A virtual environment in ``folder`` seeing only the GPU image's distributions and the carried wheels."""
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(folder)], check=True)  # noqa: SLF001
    site = next((folder / "lib").glob("python3*/site-packages"))
    wanted = _with_dependencies([*IMAGE, *carried_wheels()])
    for distribution in metadata.distributions():
        if _name(distribution.metadata["Name"]) not in wanted:
            continue
        for top in {Path(str(file)).parts[0] for file in distribution.files or []}:
            source = Path(str(distribution.locate_file(top)))
            if top.endswith(".pth") or top in ("..", "__pycache__") or not source.exists():
                continue
            if not (site / top).exists():
                (site / top).symlink_to(source)
    return folder / "bin" / "python"
