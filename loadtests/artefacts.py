"""What the benchmarks measure, built on demand under ``runs/bench/`` (git-ignored) and reused when current.

* ``bench.pt`` -- EfficientNet-Lite0 at 224 px with its ImageNet backbone and an untrained head
  (the weights do not change the speed), unless a checkpoint is given;
* ``bench.onnx`` -- its export (``python -m export.onnx``, parity-checked on the benchmark photos);
* ``bench-int8.onnx`` -- the static int8 model (``python -m export.quantize``), when that exporter
  exists in this checkout;
* ``model_store/detector.mar`` -- the TorchServe archive of ``bench.onnx`` (``python -m handlers.archive``).

Each is made by the project's own command, run as a user would run it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from loadtests.config import ROOT


def _run(*args: str) -> None:
    """``python -m ...`` from the repository root; its stderr becomes the error when it fails."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"python -m {' '.join(args)} failed:\n{(result.stderr or result.stdout)[-3000:]}")


def _current(target: Path, source: Path) -> bool:
    return target.is_file() and target.stat().st_mtime >= source.stat().st_mtime


def bench_checkpoint(work_dir: Path, given: Path | None = None) -> Path:
    """The given checkpoint, or Lite0 at 224 px with an untrained head (built once)."""
    if given is not None:
        if not given.is_file():
            raise FileNotFoundError(f"no checkpoint at {given}")
        return given
    path = work_dir / "bench.pt"
    if not path.is_file():
        from detector.checkpoint import Checkpoint, CheckpointMetadata, save_checkpoint
        from detector.model import build_model

        model, weights = build_model("efficientnet_lite0", pretrained=True)
        meta = CheckpointMetadata(
            architecture="efficientnet_lite0", dropout=0.2, pretrained_weights=weights, version="bench"
        )
        save_checkpoint(path, Checkpoint(model.state_dict(), meta))
    return path


def bench_onnx(work_dir: Path, checkpoint: Path, images: Path) -> Path:
    """The checkpoint exported to ONNX by the export command (parity-checked on ``images``)."""
    path = work_dir / f"{checkpoint.stem}.onnx"
    if not _current(path, checkpoint):
        _run("export.onnx", "--checkpoint", str(checkpoint), "--output", str(path), "--parity-images", str(images))
    return path


def quantizer_available() -> bool:
    """Whether this checkout has the int8 exporter (it lands with its own issue)."""
    return (ROOT / "export" / "quantize.py").is_file()


def bench_int8(work_dir: Path, onnx_model: Path, images: Path, given: Path | None = None) -> Path | None:
    """The given int8 model, or one made by ``export.quantize`` calibrated on ``images``; None without it."""
    if given is not None:
        if not given.is_file():
            raise FileNotFoundError(f"no int8 model at {given}")
        return given
    if not quantizer_available():
        return None
    path = work_dir / f"{onnx_model.stem}-int8.onnx"
    if not _current(path, onnx_model):
        _run("export.quantize", "--model", str(onnx_model), "--calibration", str(images), "--output", str(path))
    return path


def bench_archive(work_dir: Path, onnx_model: Path, config_file: Path | None = None, *, evidence: bool = False) -> Path:
    """The TorchServe archive of ``onnx_model`` with the committed model-config (or ``config_file``).

    The config's ``handler.evidence`` is set to ``evidence`` (off by default, so TorchServe does the same
    work per image as the other servers measured); the archive is rebuilt every time (under a second),
    so it always holds the config asked for.
    """
    import yaml

    source = config_file or ROOT / "torchserve" / "model-config.yaml"
    config = yaml.safe_load(source.read_text()) or {}
    config.setdefault("handler", {})["evidence"] = evidence
    derived = work_dir / "model-config.yaml"
    derived.write_text(f"# {source} with handler.evidence={evidence}, written by loadtests.artefacts\n")
    with derived.open("a") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    path = work_dir / "model_store" / "detector.mar"
    _run("handlers.archive", "--model", str(onnx_model), "--output", str(path), "--config-file", str(derived))
    return path


def grpc_stubs() -> None:
    """TorchServe's gRPC stubs (``make grpc-stubs``), generated when missing."""
    if not (ROOT / "handlers" / "grpc_gen" / "inference_pb2_grpc.py").is_file():
        _run("handlers.grpc_stubs")
