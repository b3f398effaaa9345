"""Throughput of the scanner and of the Ray Data pipeline on the same folder: ``python -m scan.benchmark``.

The folder holds real-photo JPEGs of mixed sizes (matplotlib's photograph of Grace Hopper, cropped,
resized and re-encoded: 640x480 up to 4000x3000), so decoding costs what it costs on camera files.
Without ``--model`` it measures an untrained-head EfficientNet-Lite0 at 224 px exported to ONNX:
the weights do not change the speed.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
from PIL import Image
from pydantic import Field
from pydantic_settings import CliApp

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


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(BenchSettings, cli_args=argv)
    from scan.cli import run_scan
    from scan.config import ScanSettings
    from scan.ray_pipeline import RaySettings, run_ray_scan, start_ray

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = make_folder(work / "photos", settings.images, settings.seed)
        model = settings.model or default_model(work)
        megabytes = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(
            f"{settings.images} JPEGs, {megabytes:.0f} MB, sizes {SIZES[0]} to {SIZES[-1]}; model {model.name}; "
            f"provenance evidence {'on' if settings.evidence else 'off'}"
        )

        cli = run_scan(
            ScanSettings(
                inputs=[folder],
                model=model,
                output=work / "report",
                workers=settings.workers,
                batch_size=settings.batch_size,
                evidence=settings.evidence,
            )
        )
        print(f"CLI (detector-scan, {settings.workers} decode threads): {cli['images_per_second']} images/s")

        ray_settings = RaySettings(
            inputs=[str(folder)],
            model=model,
            output=str(work / "parquet"),
            actors=settings.actors,
            batch_size=settings.batch_size,
            evidence=settings.evidence,
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
