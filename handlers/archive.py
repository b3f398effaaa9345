"""Pack a model, the handler and the core into a TorchServe archive: ``python -m handlers.archive``.

The archive holds the model file (``.onnx`` or ``.pt``), ``torchserve_handler.py``, the ``detector/``
and ``provenance/`` packages (so the worker imports the same preprocessing and calibration code as everything else, even
on a machine without this repository) and the model-config YAML. It is built by torch-model-archiver's
Python API in a scratch folder and moved into place, so a failed build never leaves half an archive.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from model_archiver.model_archiver_config import ModelArchiverConfig
from model_archiver.model_packaging import generate_model_archive

from detector.settings import run_cli
from handlers.config import ROOT, ArchiveSettings

HANDLER = ROOT / "handlers" / "torchserve_handler.py"
CORE = ROOT / "detector"
#: the provenance evidence readers, used when the model config turns ``handler.evidence`` on
PROVENANCE = ROOT / "provenance"


def build_archive(settings: ArchiveSettings) -> Path:
    """Write ``settings.output`` and return it."""
    if not settings.model.is_file():
        raise FileNotFoundError(f"no model at {settings.model}: train (make train) and export (make export) first")
    if settings.model.suffix not in {".onnx", ".pt"}:
        raise ValueError(f"{settings.model} is neither an exported .onnx model nor a .pt checkpoint")
    with tempfile.TemporaryDirectory(prefix="mar-") as scratch:
        staged = Path(scratch) / "extra"
        # torch-model-archiver copies the *contents* of an extra-files folder into the archive root
        for package in (CORE, PROVENANCE):
            shutil.copytree(package, staged / package.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        generate_model_archive(
            ModelArchiverConfig(
                model_name=settings.model_name,
                handler=str(HANDLER),
                version=settings.version,
                serialized_file=str(settings.model),
                extra_files=str(staged),
                export_path=scratch,
                config_file=str(settings.config_file),
                force=True,
            )
        )
        settings.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(scratch) / f"{settings.model_name}.mar", settings.output)
    return settings.output


def main(argv: list[str] | None = None) -> int:
    return run_cli(ArchiveSettings, _build_and_report, argv)


def _build_and_report(settings: ArchiveSettings) -> None:
    output = build_archive(settings)
    print(f"wrote {output} ({settings.model_name} {settings.version}, {settings.model.name})")


if __name__ == "__main__":
    sys.exit(main())
