"""Where the provenance evidence's time goes in the web app, by kind of file: ``python -m loadtests.evidence_cost``.

For each file: the process CPU time of the model's preprocessing as the web app runs it
(:func:`detector.preprocessing.decode_image` with draft mode down to the model's input size, then
:func:`~detector.preprocessing.image_to_array`), and of :func:`provenance.inspect` two ways, taking turns:
reading the file alone (as before #16 part 1), and with the model's decode handed on where the checks
read it (:func:`provenance.reads_pixels`), as the web app does now. Process CPU time counts the checks'
worker threads and is far less disturbed by other load on the machine than wall time. The files are
grouped by what the watermark check does with them (the step that costs), with the scale the model
decodes them at: a step at the same scale reads the model's decode, at another it decodes the file
itself. Prints one table (means per group, and over all files); no model is loaded.

    .venv/bin/python -m loadtests.evidence_cost                                    # the benchmark's photos
    .venv/bin/python -m loadtests.evidence_cost --images ../shared/data/realvsai-v1 --sample 200
"""

from __future__ import annotations

import random
import statistics
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from pydantic_settings import CliApp

from detector.preprocessing import PreprocessConfig, decode_image, image_to_array, list_images
from loadtests.config import EvidenceCostSettings
from provenance import ProvenanceSettings, inspect, reads_pixels
from provenance.watermark import _cannot_carry, _is_420_upright


def files_of(settings: EvidenceCostSettings) -> list[Path]:
    draw = random.Random(settings.seed)
    found: list[Path] = []
    for source in settings.images:
        files = list_images(source) if source.is_dir() else [source]
        if settings.sample is not None and len(files) > settings.sample:
            files = sorted(draw.sample(files, settings.sample))
        found += files
    return found


def group(image: Image.Image, scale: int, provenance: ProvenanceSettings) -> str:
    """What the watermark check does with the file, and whether the model decodes it at the scale that step reads."""
    width, height = image.size
    if _cannot_carry(image):
        return "no colour or under 256x256: nothing decoded"
    if width * height > provenance.watermark_max_pixels:
        return "over the watermark's pixel cap: nothing decoded"
    if _is_420_upright(image):
        return f"4:2:0 JPEG, half-scale read; model at 1/{scale}" + (" (shared)" if scale == 2 else "")
    return f"{image.format} full decode; model at 1/{scale}" + (" (shared)" if scale == 1 else "")


def cpu_ms(run: Callable[[], object], repeats: int) -> float:
    """Median process CPU time of ``run`` (all threads), in ms."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(EvidenceCostSettings, cli_args=argv)
    provenance = ProvenanceSettings(time_budget=60.0)  # every check to its end: its cost, not the budget's
    config = PreprocessConfig(input_size=settings.input_size)
    files = files_of(settings)
    if not files:
        print(f"no images under {', '.join(map(str, settings.images))}", file=sys.stderr)
        return 2
    inspect(files[0].read_bytes(), provenance)  # imports and native libraries, outside the timing
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for path in files:
        data = path.read_bytes()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = Image.open(path)
            decoded = decode_image(data, draft_size=settings.input_size)
        except Exception as error:  # noqa: BLE001 - refused by the model: no evidence is read for it
            print(f"skipped {path}: {error}", file=sys.stderr)
            continue
        handed_on = decoded if reads_pixels(decoded, provenance) else None
        model = cpu_ms(
            lambda d=data: image_to_array(decode_image(d, draft_size=settings.input_size).model_image, config),
            settings.repeats,
        )
        alone, shared = [], []
        for _ in range(settings.repeats):  # the two ways take turns
            alone.append(cpu_ms(lambda d=data: inspect(d, provenance), 1))
            shared.append(cpu_ms(lambda d=data, h=handed_on: inspect(d, provenance, h), 1))
        rows[group(image, decoded.scale, provenance)].append(
            (model, statistics.median(alone), statistics.median(shared))
        )
    print(
        f"{len(files)} files from {', '.join(map(str, settings.images))}; process CPU ms per file, means of the "
        f"per-file medians of {settings.repeats} runs\n"
    )
    print(
        "| files: what the watermark check does; the model's decode | n | model preprocessing | evidence, file read "
        "alone | evidence, model's decode handed on |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    every = [row for group_rows in rows.values() for row in group_rows]
    for name, group_rows in sorted(rows.items()) + [("all files", every)]:
        means = [statistics.mean(row[k] for row in group_rows) for k in range(3)]
        print(f"| {name} | {len(group_rows)} | {means[0]:.2f} | {means[1]:.2f} | {means[2]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
