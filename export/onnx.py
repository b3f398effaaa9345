"""Export a checkpoint to ONNX and prove it answers like PyTorch: ``python -m export.onnx`` (``make export``).

The ONNX file carries the checkpoint's metadata (classes, input size, mean/std, temperature,
threshold, version, ...) as metadata properties, so ONNX Runtime consumers need nothing else.
The graph has two outputs: ``logits`` and ``cam``, the class activation map
(:class:`detector.model.ExplainedModel`) that heatmaps are drawn from; a caller asking for the logits
alone does not pay for the map.  The batch axis is dynamic.  After writing, a parity check runs both
models on real images and fails the export when their calibrated probabilities differ by 1e-4 or more.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from pydantic import Field

from detector.calibration import calibrated_probabilities
from detector.checkpoint import load_model
from detector.metadata import CheckpointMetadata
from detector.model import ExplainedModel
from detector.preprocessing import ImageDecodeError, list_images, preprocess
from detector.runtimes.onnx_runtime import CAM_NAME, INPUT_NAME, METADATA_KEY, OUTPUT_NAME, OnnxDetector
from detector.settings import ToolSettings, run_cli, tool_config
from training.data import read_manifest

log = logging.getLogger("export")

PARITY_TOLERANCE = 1e-4


class ExportSettings(ToolSettings):
    """``python -m export.onnx``: checkpoint in, ONNX model out, parity checked."""

    model_config = tool_config("DETECTOR_EXPORT_", "python -m export.onnx", extra="forbid")

    checkpoint: Path = Field(description="a .pt checkpoint, e.g. runs/NAME/model.pt")
    output: Path = Field(description="where to write the .onnx file")
    opset: int = Field(18, ge=13, description="ONNX opset version")
    parity_images: list[Path] = Field(
        default_factory=list,
        description="images or folders for the parity check (default: the run's val/test images)",
    )
    max_parity_images: int = Field(32, ge=1)


def export_onnx(checkpoint: Path, output: Path, opset: int = 18) -> CheckpointMetadata:
    """Write ``output`` from ``checkpoint`` with a dynamic batch axis and the metadata attached."""
    model, meta = load_model(checkpoint)
    size = meta.preprocess_config.input_size
    output.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated upstream but exact for this network and needs no
        # onnxscript; parity below is the proof either way.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            ExplainedModel(model, meta.classes),
            (torch.zeros(1, 3, size, size),),
            str(output),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME, CAM_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}, CAM_NAME: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    attach_metadata(output, meta)
    return meta


def attach_metadata(path: Path, meta: CheckpointMetadata) -> None:
    """The full metadata as JSON, plus the headline fields as individual, human-readable properties."""
    proto = onnx.load(str(path))
    readable = {
        METADATA_KEY: meta.to_json(),
        "classes": ",".join(meta.classes),
        "input_size": str(meta.preprocess_config.input_size),
        "mean": ",".join(str(v) for v in meta.preprocess_config.mean),
        "std": ",".join(str(v) for v in meta.preprocess_config.std),
        "temperature": repr(meta.temperature),
        "threshold": repr(meta.threshold),
        "real_threshold": repr(meta.real_threshold),
        "version": meta.version,
        "architecture": meta.architecture,
    }
    del proto.metadata_props[:]
    for key, value in readable.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "real-vs-ai-detector"
    proto.model_version = 1
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def parity_images(checkpoint: Path, given: list[Path], limit: int) -> list[Path]:
    """The images named (files or folders), else the checkpoint's run's validation and test images.

    A checkpoint outside a run folder (the model shipped in ``models/default``, on a machine without
    its data set) falls back to the sample images installed with matplotlib: a photo and two drawings,
    enough to catch an export that computes something else.
    """
    found: list[Path] = []
    for item in given:
        found += list_images(item) if item.is_dir() else [item]
    split = checkpoint.parent / "split.csv"
    if not found and split.is_file():
        found = [sample.path for sample in read_manifest(split) if sample.split in ("val", "test")]
    if not found:
        found = _installed_sample_images()
    return found[:limit]


def _installed_sample_images() -> list[Path]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "sample_data"
    names = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")
    return [folder / name for name in names if (folder / name).is_file()]


def check_parity(checkpoint: Path, onnx_path: Path, images: list[Path]) -> float:
    """Largest absolute difference of calibrated probabilities between PyTorch and ONNX Runtime.

    The class activation maps must agree too (to 1e-3 logits, as float32 sums over 1,280 channels
    allow): a map that drifted from the logits would draw a heatmap of something else.
    """
    if not images:
        raise ValueError("the parity check needs at least one image (--parity-images)")
    model, meta = load_model(checkpoint)
    detector = OnnxDetector(onnx_path)
    batch = []
    for path in images:
        try:
            batch.append(preprocess(path, meta.preprocess_config))
        except ImageDecodeError as error:
            log.warning("parity: skipping %s (%s)", path, error)
    inputs = np.stack(batch)
    with torch.inference_mode():
        logits, cam = ExplainedModel(model, meta.classes)(torch.from_numpy(inputs))
    onnx_logits, onnx_cam = detector.logits_and_cam(inputs)
    cam_gap = float(np.abs(cam.numpy() - onnx_cam).max())
    if cam_gap > 1e-3 * max(1.0, float(np.abs(cam.numpy()).max())):
        raise ValueError(f"the exported class activation map differs from PyTorch's by {cam_gap:.2e}")
    reference = calibrated_probabilities(logits.numpy(), meta.temperature)
    return float(np.abs(reference - calibrated_probabilities(onnx_logits, meta.temperature)).max())


def main(argv: list[str] | None = None) -> int:
    return run_cli(ExportSettings, _export_and_check, argv)


def _export_and_check(settings: ExportSettings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    meta = export_onnx(settings.checkpoint, settings.output, settings.opset)
    images = parity_images(settings.checkpoint, settings.parity_images, settings.max_parity_images)
    difference = check_parity(settings.checkpoint, settings.output, images)
    if difference >= PARITY_TOLERANCE:
        print(
            f"error: parity check failed: max |p_torch - p_onnx| = {difference:.2e} >= {PARITY_TOLERANCE}",
            file=sys.stderr,
        )
        settings.output.unlink(missing_ok=True)
        return 1
    print(f"wrote {settings.output} (model {meta.version}); parity on {len(images)} images: max diff {difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
