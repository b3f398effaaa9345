"""The scanner's scoring on Ray Data, for more images than one machine should handle.

    read_binary_files (local folders, s3://, gs://, ...)
      -> map_batches(ScoringActor)   an actor pool; each actor loads the model once (OpenVINO or ONNX Runtime)
      -> write_parquet(output)       one row per file: the CLI's report columns

Locally, ``python -m scan.ray_pipeline FOLDER --model model_store/detector.onnx --output out/``
starts a private Ray instance on this machine.  On a cluster, run the same command on the head node
(or submit it with ``ray job submit``) with ``--address auto``, inputs and output on object storage
(``s3://bucket/images/``, ``s3://bucket/reports/``) and the model file on a path every node can read;
nothing else changes.  Decoding uses the same core preprocessing and the same scoring as the CLI, so
results are identical file for file (the evidence, too, reads the model's decode of a file where it can,
:func:`scan.scoring.prepare`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from pydantic_settings import CliApp, CliPositionalArg

from detector.preprocessing import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from detector.runtimes import OnnxEngine
from detector.settings import ToolSettings, tool_config
from scan.scoring import COLUMNS, prepare, score


class RaySettings(ToolSettings):
    """Score images with Ray Data and write Parquet."""

    # booleans take a value here (--evidence false), unlike the other tools' bare flags
    model_config = tool_config("DETECTOR_RAY_", "python -m scan.ray_pipeline", cli_implicit_flags=False)

    inputs: CliPositionalArg[list[str]] = Field(description="folders or files: local paths or s3://, gs://, ... URIs")
    model: Path = Field(Path("model_store/detector.onnx"), description="the .onnx model, readable on every node")
    output: str = Field("scan-parquet", description="folder or URI for the Parquet files")
    actors: int = Field(2, ge=1, description="scoring actors (each loads the model once)")
    threads_per_actor: int = Field(1, ge=1, description="inference threads in each actor")
    engine: OnnxEngine = Field(
        "auto", description="what runs the .onnx in each actor: openvino, onnxruntime, or auto (as detector-scan)"
    )
    batch_size: int = Field(16, ge=1)
    threshold: float | None = Field(None, ge=0, le=1, description="P(ai) from which to say ai (default: the model's)")
    real_threshold: float | None = Field(
        None, ge=0, le=1, description="P(ai) at or below which to say real, unsure between (default: the model's)"
    )
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    evidence: bool = Field(True, description="read provenance evidence into the evidence column, as the CLI does")
    address: str | None = Field(None, description="Ray cluster address (auto on a cluster); default: start one here")


class ScoringActor:
    """Holds one loaded model (OpenVINO or ONNX Runtime: --engine) for its lifetime; scores raw file bytes."""

    def __init__(
        self,
        model: str,
        threads: int,
        threshold: float | None,
        max_pixels: int,
        evidence: bool = True,
        real_threshold: float | None = None,
        engine: str = "auto",
    ) -> None:
        from detector.runtimes import open_detector
        from provenance import ProvenanceSettings

        self.detector = open_detector(model, threads=threads, engine=engine)
        self.threshold, self.real_threshold = threshold, real_threshold
        self.max_pixels = max_pixels
        self.provenance = ProvenanceSettings() if evidence else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        paths = [str(p) for p in batch["path"]]
        prepared = [prepare(self.detector, bytes(data), self.max_pixels, self.provenance) for data in batch["bytes"]]
        decoded, evidence = [item for item, _ in prepared], [found for _, found in prepared]
        scored = score(self.detector, paths, decoded, self.threshold, evidence, real_threshold=self.real_threshold)
        rows = [row.flat() for row in scored]
        return {column: [row[column] for row in rows] for column in COLUMNS}


def start_ray(settings: RaySettings) -> None:
    """Join the cluster at ``settings.address``, or start a private instance on this machine."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no telemetry calls from closed networks
    import ray

    if ray.is_initialized():
        return
    if settings.address is not None:
        ray.init(address=settings.address, log_to_driver=False)
        return
    # Give the local instance one logical CPU beyond the actors' share, or the file-reading tasks
    # can wait forever behind actors that hold every CPU of a small machine.
    cpus = max(os.cpu_count() or 1, settings.actors * settings.threads_per_actor + 1)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)


def run_ray_scan(settings: RaySettings) -> int:
    """Run the pipeline; return the number of rows written."""
    import ray

    start_ray(settings)
    dataset = ray.data.read_binary_files(
        settings.inputs, include_paths=True, file_extensions=[s.lstrip(".") for s in IMAGE_SUFFIXES]
    )
    scored = dataset.map_batches(
        ScoringActor,
        fn_constructor_kwargs={
            "model": str(Path(settings.model).resolve()),
            "threads": settings.threads_per_actor,
            "engine": settings.engine,
            "threshold": settings.threshold,
            "real_threshold": settings.real_threshold,
            "max_pixels": settings.max_pixels,
            "evidence": settings.evidence,
        },
        batch_size=settings.batch_size,
        batch_format="numpy",
        concurrency=settings.actors,
        num_cpus=settings.threads_per_actor,
    )
    scored.write_parquet(settings.output)
    return ray.data.read_parquet(settings.output).count()


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(RaySettings, cli_args=argv)
    if not settings.model.is_file():
        print(f"error: no model at {settings.model} (make export writes model_store/detector.onnx)", file=sys.stderr)
        return 2
    rows = run_ray_scan(settings)
    print(f"{rows} rows written to {settings.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
