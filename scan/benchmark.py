"""Throughput of the scanner and of the Ray Data pipeline on the same folder: ``python -m scan.benchmark``.

The folder holds real-photo JPEGs of mixed sizes (matplotlib's photograph of Grace Hopper, cropped,
resized and re-encoded: 640x480 up to 4000x3000), so decoding costs what it costs on camera files.
Without ``--model`` it measures an untrained-head EfficientNet-Lite0 at 224 px exported to ONNX:
the weights do not change the speed. ``--folder`` scans images of your own instead (a copy of camera
files or of a data set's originals); ``--rounds N`` scans them N times with the CLI, each round with
the process CPU time per image (all threads: far less disturbed by other load than images/s), after a
warm-up scan of a few of the files; ``--no-ray`` leaves Ray Data out.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
from PIL import Image
from pydantic import Field
from pydantic_settings import CliApp

from detector.preprocessing import list_images
from detector.runtimes import OnnxEngine, onnx_engine
from detector.settings import ToolSettings, tool_config

SIZES = [(640, 480), (1024, 768), (1600, 1200), (2048, 1536), (4000, 3000)]


class BenchSettings(ToolSettings):
    model_config = tool_config("DETECTOR_SCAN_BENCH_", "python -m scan.benchmark", extra="forbid")

    images: int = Field(300, ge=1, description="JPEGs in the benchmark folder")
    model: Path | None = Field(None, description=".onnx to measure (default: Lite0 at 224 px, untrained head)")
    workers: int = Field(2, ge=1, description="decoding threads of the CLI")
    actors: int = Field(2, ge=1, description="Ray Data scoring actors")
    batch_size: int = Field(16, ge=1)
    seed: int = 0
    evidence: bool = Field(True, description="read provenance evidence too, as both tools do by default")
    folder: Path | None = Field(None, description="scan the images in this folder instead of the generated photos")
    rounds: int = Field(1, ge=1, description="CLI scans of the folder, each with its CPU ms per image")
    ray: bool = Field(True, description="measure the Ray Data pipeline too (--no-ray: the CLI only)")
    engine: OnnxEngine = Field("auto", description="what runs the model, in the CLI and in Ray Data's actors")


def make_folder(root: Path, count: int, seed: int) -> Path:
    photo = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        left, top = rng.randint(0, 60), rng.randint(0, 60)
        crop = photo.crop((left, top, left + photo.width - 60, top + photo.height - 60))
        crop.resize((width, height), Image.Resampling.BICUBIC).save(
            root / f"photo_{i:04d}.jpg", quality=rng.randint(80, 95)
        )
    return root


def default_model(folder: Path) -> Path:
    from detector.checkpoint import Checkpoint, CheckpointMetadata, save_checkpoint
    from detector.model import build_model
    from export.onnx import export_onnx

    model, weights = build_model("efficientnet_lite0", pretrained=True)
    meta = CheckpointMetadata(
        architecture="efficientnet_lite0", dropout=0.2, pretrained_weights=weights, version="bench"
    )
    checkpoint = save_checkpoint(folder / "bench.pt", Checkpoint(model.state_dict(), meta))
    export_onnx(checkpoint, folder / "bench.onnx")
    return folder / "bench.onnx"


def _cpu_seconds() -> float:
    """This process's CPU time so far, all threads (the CLI decodes, reads evidence and runs the model in it)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(BenchSettings, cli_args=argv)
    from scan.cli import run_scan
    from scan.config import ScanSettings
    from scan.ray_pipeline import RaySettings, run_ray_scan, start_ray

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if settings.folder is None:
            folder = make_folder(work / "photos", settings.images, settings.seed)
            what = f"{settings.images} JPEGs, sizes {SIZES[0]} to {SIZES[-1]}"
        else:
            folder = settings.folder
            what = f"{len(list_images(folder))} images in {folder}"
        model = settings.model or default_model(work)
        megabytes = sum(p.stat().st_size for p in list_images(folder)) / 1e6
        print(
            f"{what}, {megabytes:.0f} MB; model {model.name} in {onnx_engine(settings.engine)}; "
            f"provenance evidence {'on' if settings.evidence else 'off'}"
        )

        def cli_scan(inputs: list[Path], output: Path) -> dict[str, float]:
            return run_scan(
                ScanSettings(
                    inputs=inputs,
                    model=model,
                    output=output,
                    workers=settings.workers,
                    batch_size=settings.batch_size,
                    evidence=settings.evidence,
                    engine=settings.engine,
                    resume=False,
                )
            )

        cli_scan(list_images(folder)[:8], work / "warm-up")  # imports and native libraries, not counted
        cpu_ms, rates = [], []
        for round_ in range(settings.rounds):
            started = _cpu_seconds()
            cli = cli_scan([folder], work / f"report-{round_}")
            cpu_ms.append(1000 * (_cpu_seconds() - started) / max(cli["scanned_now"], 1))
            rates.append(cli["images_per_second"])
            print(
                f"CLI (detector-scan, {settings.workers} decode threads): {cli['images_per_second']} images/s, "
                f"{cpu_ms[-1]:.1f} ms process CPU per image"
            )
        if settings.rounds > 1:
            print(
                f"CLI, median of {settings.rounds} rounds: {statistics.median(rates):.1f} images/s, "
                f"{statistics.median(cpu_ms):.1f} ms process CPU per image"
            )
        if not settings.ray:
            return 0

        ray_settings = RaySettings(
            inputs=[str(folder)],
            model=model,
            output=str(work / "parquet"),
            actors=settings.actors,
            batch_size=settings.batch_size,
            evidence=settings.evidence,
            engine=settings.engine,
        )
        started = time.perf_counter()
        start_ray(ray_settings)
        ray_start = time.perf_counter() - started
        started = time.perf_counter()
        rows = run_ray_scan(ray_settings)
        elapsed = time.perf_counter() - started
        print(
            f"Ray Data ({settings.actors} actors, 1 thread each): {rows / elapsed:.1f} images/s "
            f"(after {ray_start:.1f} s to start Ray)"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.exit(main())
