"""How often the verdict flips when a test image is re-saved or resized: ``python -m training.flips``.

For every test image of a run, the verdict on the image as it is and on each of the consistency
check's re-encodings of it (:data:`detector.consistency.VARIANTS`: JPEG quality 75, 0.5x down-scale,
centre crop), each decided twice: by the thresholds alone, and with the consistency check on (the
re-encoded image is itself checked against its own re-encodings). A flip is a verdict on the
re-encoded image that differs from the verdict on the original. The table goes to
``<output>/flips.json`` and ``flips.md``; the model card quotes it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
from pydantic import Field
from tqdm import tqdm

from detector.calibration import Decision
from detector.consistency import VARIANTS, reconcile, variants_of
from detector.preprocessing import ImageDecodeError, image_to_array, load_image
from detector.runtimes import Detector, open_detector
from detector.settings import ToolSettings, run_cli, tool_config
from training.data import read_manifest
from training.logs import setup_logging
from training.metrics import unsure_band

log = logging.getLogger("training.flips")


class FlipSettings(ToolSettings):
    """A model and the run whose test split it is measured on."""

    model_config = tool_config("DETECTOR_FLIPS_", "python -m training.flips")

    model: Path = Field(description="a .pt checkpoint or an exported .onnx")
    run: Path = Field(description="run folder whose split.csv names the test images")
    output: Path | None = Field(None, description="folder for flips.json and flips.md (default: <run>/evaluation)")
    limit: int | None = Field(None, ge=1, description="measure only the first N test images (quick looks)")
    threads: int | None = Field(None, ge=1)


def _decisions(detector: Detector, image: object) -> tuple[Decision, Decision]:
    """The verdict on ``image`` by the thresholds alone, and with the consistency check."""
    config = detector.preprocess_config
    batch = np.concatenate([image_to_array(image, config)[None], variants_of(image, config)])
    plain, *variants = detector.classify(batch)
    return plain, reconcile(plain, variants)


def measure(settings: FlipSettings) -> dict[str, dict[str, float]]:
    detector = open_detector(settings.model, threads=settings.threads)
    tests = [s for s in read_manifest(settings.run / "split.csv") if s.split == "test"][: settings.limit]
    names = ["original", *VARIANTS]
    plain: dict[str, list[str]] = {name: [] for name in names}
    checked: dict[str, list[str]] = {name: [] for name in names}
    truth: list[str] = []
    for sample in tqdm(tests, desc="flips", unit="image"):
        try:
            image = load_image(sample.path)
        except ImageDecodeError as error:
            log.warning("skipping %s (%s)", sample.path, error)
            continue
        truth.append(sample.label)
        for name, version in zip(names, [image] + [change(image) for change in VARIANTS.values()], strict=True):
            without, with_check = _decisions(detector, version)
            plain[name].append(without.label)
            checked[name].append(with_check.label)
    table: dict[str, dict[str, float]] = {}
    for mode, labels in (("thresholds", plain), ("with consistency check", checked)):
        original = np.array(labels["original"])
        table[mode] = {
            "images": len(original),
            **unsure_band(original, truth),
            **{f"flips: {name}": float(np.mean(np.array(labels[name]) != original)) for name in VARIANTS},
        }
    return table


def _markdown(table: dict[str, dict[str, float]]) -> str:
    columns = list(next(iter(table.values())))
    lines = ["| verdicts by | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for mode, row in table.items():
        cells = [f"{row[c]:.0f}" if c == "images" else f"{100 * row[c]:.1f} %" for c in columns]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _run(settings: FlipSettings) -> int:
    setup_logging()
    output = settings.output or settings.run / "evaluation"
    output.mkdir(parents=True, exist_ok=True)
    table = measure(settings)
    (output / "flips.json").write_text(json.dumps(table, indent=2))
    (output / "flips.md").write_text(_markdown(table))
    print(_markdown(table))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(FlipSettings, _run, argv)


if __name__ == "__main__":
    sys.exit(main())
