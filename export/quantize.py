"""Static int8 (QDQ) quantisation of the exported model, judged against fp32: ``python -m export.quantize``.

ONNX Runtime's *dynamic* quantisation makes this network about 10x slower than fp32 (its convolutions
become ConvInteger, which has no fast kernel), so the activations' ranges are calibrated ahead of time
on real images instead (``quantize_static``, QDQ format, per-channel weights), after ONNX Runtime's
``quant_pre_process`` (shape inference and graph optimisation).

The int8 file keeps every metadata property of the fp32 export (so ``OnnxDetector``, the web app and the
scanner load it unchanged), with ``-int8`` appended to the version, so answers say which model gave them,
and a ``quantization`` property recording how it was made.

Given a run folder, the command then compares both models on the run's test split (accuracy, agreement,
largest probability difference) and on the clock (images/s at batch 1 and 8), prints a table, writes a
JSON report and says whether int8 ships: faster at every batch size and under 1 point less accurate.
A model that does not ship is deleted unless ``--keep-rejected``; the exit status is 0 either way.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from pydantic import Field

from detector.calibration import calibrated_probabilities
from detector.labels import AI, class_index
from detector.runtimes.onnx_runtime import METADATA_KEY, OnnxDetector, available_providers
from detector.settings import ToolSettings, run_cli, tool_config
from export.compare import (
    OptimizationLevel,
    compare_accuracy,
    format_table,
    measure_throughput,
    report,
    verdict,
)
from export.images import ImageCalibrationReader, calibration_images, is_run_folder, preprocess_all, split_images
from training.calibrate import fit_temperature, threshold_for_fpr

log = logging.getLogger("export.quantize")

#: appended to the fp32 version string, so every answer says it came from the int8 model
VERSION_SUFFIX = "-int8"
#: metadata property recording how the int8 model was made (JSON)
QUANTIZATION_KEY = "quantization"

_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}


class QuantizeSettings(ToolSettings):
    """``python -m export.quantize``: fp32 ONNX in, int8 QDQ ONNX out, compared on a run's test split."""

    model_config = tool_config("DETECTOR_QUANTIZE_", "python -m export.quantize", extra="forbid")

    model: Path = Field(description="the fp32 .onnx from `make export`")
    calibration: Path = Field(description="a folder of images, or a run folder (its train split is used)")
    output: Path = Field(description="where to write the int8 .onnx")
    run: Path | None = Field(
        None, description="run folder whose test split evaluates both models (default: --calibration if it is one)"
    )
    report: Path | None = Field(None, description="JSON report (default: --output with .json)")
    max_calibration_images: int = Field(200, ge=1, description="a seeded sample of at most this many images")
    calibration_batch_size: int = Field(8, ge=1)
    seed: int = 0
    # --- how to quantise (docs/quantization.md: what was tried, what won) ---
    method: Literal["minmax", "entropy", "percentile"] = Field("percentile", description="activation range calibration")
    percentile: float = Field(99.999, gt=50, le=100, description="--method percentile: share of values kept in range")
    per_channel: bool = Field(True, description="one weight scale per output channel (depthwise convs need it)")
    activation_type: Literal["uint8", "int8"] = Field("uint8", description="uint8 suits x86 (u8s8 VNNI kernels)")
    reduce_range: bool = Field(False, description="7-bit weights, for x86 CPUs without VNNI")
    activation_symmetric: bool = Field(False, description="ActivationSymmetric extra option")
    keep_removable_activations: bool = Field(False, description="QDQKeepRemovableActivations extra option")
    op_types: list[str] = Field(
        default_factory=list, description="quantise only these op types, e.g. Conv,Gemm (default: all supported)"
    )
    exclude_first_conv: bool = Field(False, description="keep the stem convolution in float")
    exclude_head: bool = Field(False, description="keep the classifier (Gemm/MatMul) in float")
    # --- how to judge it ---
    threads: int = Field(2, ge=1, description="intra-op threads for the speed measurement")
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8], description="batch sizes timed")
    repeats: int = Field(5, ge=1, description="timed runs per model and batch size; the median is reported")
    images_per_run: int = Field(64, ge=1, description="images through the model per timed run")
    optimization_level: OptimizationLevel = Field("all", description="ONNX Runtime graph optimisation when timing")
    max_accuracy_loss: float = Field(0.01, ge=0, description="ship only if int8 loses less than this (0.01 = 1 point)")
    min_speedup: float = Field(1.0, gt=0, description="ship only if int8 is faster than fp32 by more than this")
    keep_rejected: bool = Field(False, description="keep the int8 file even when it does not ship")
    recalibrate: bool = Field(
        True, description="give int8 its own temperature and threshold, fitted on the run's validation split"
    )


def quantize_model(settings: QuantizeSettings) -> dict[str, Any]:
    """Write ``settings.output``: the fp32 model statically quantised, with its metadata carried over."""
    fp32 = OnnxDetector(settings.model)
    paths = calibration_images(settings.calibration, settings.max_calibration_images, settings.seed)
    inputs, _ = preprocess_all(paths, fp32.preprocess)
    reader = ImageCalibrationReader(inputs, settings.calibration_batch_size)
    log.info("calibrating on %d images from %s", reader.images, settings.calibration)
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(settings.model), str(prepared))
        graph = onnx.load(str(prepared)).graph
        quantize_static(
            str(prepared),
            str(settings.output),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=_TYPES[settings.activation_type],
            weight_type=QuantType.QInt8,
            op_types_to_quantize=settings.op_types or None,
            nodes_to_exclude=excluded_nodes(graph, settings.exclude_first_conv, settings.exclude_head),
            calibrate_method=_METHODS[settings.method],
            calibration_providers=available_providers(),
            extra_options={
                "ActivationSymmetric": settings.activation_symmetric,
                "QDQKeepRemovableActivations": settings.keep_removable_activations,
                "CalibPercentile": settings.percentile,
                # one switch for symmetric activation ranges whatever the method (the percentile calibrator
                # would otherwise default to symmetric, MinMax to asymmetric)
                "CalibTensorRangeSymmetric": settings.activation_symmetric,
            },
        )
    recipe = {
        "format": "QDQ",
        "weights": "int8",
        "activations": settings.activation_type,
        "method": settings.method,
        **({"percentile": settings.percentile} if settings.method == "percentile" else {}),
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
        "activation_symmetric": settings.activation_symmetric,
        "keep_removable_activations": settings.keep_removable_activations,
        "op_types": settings.op_types or "all",
        "exclude_first_conv": settings.exclude_first_conv,
        "exclude_head": settings.exclude_head,
        "calibration_images": reader.images,
        "calibration_source": str(settings.calibration),
    }
    carry_metadata(settings.model, settings.output, recipe)
    return recipe


def excluded_nodes(graph: onnx.GraphProto, first_conv: bool, head: bool) -> list[str]:
    """Names of the stem convolution and/or the classifier nodes, to keep them in float."""
    names = []
    if first_conv:
        names += [next(node.name for node in graph.node if node.op_type == "Conv")]
    if head:
        names += [node.name for node in graph.node if node.op_type in ("Gemm", "MatMul")]
    return names


def carry_metadata(
    fp32_path: Path, int8_path: Path, recipe: dict[str, Any], calibration: tuple[float, float] | None = None
) -> None:
    """Copy the fp32 model's metadata properties into the int8 model, marking the version as int8.

    ``calibration`` (temperature, threshold) replaces the fp32 model's when the int8 one got its own.
    """
    source = {p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props}
    meta = OnnxDetector(fp32_path).metadata
    int8_meta = replace(meta, version=meta.version + VERSION_SUFFIX)
    if calibration is not None:
        int8_meta = replace(int8_meta, temperature=calibration[0], threshold=calibration[1], test_metrics=None)
    props = {**source, METADATA_KEY: int8_meta.to_json(), "version": int8_meta.version}
    props.update(temperature=repr(int8_meta.temperature), threshold=repr(int8_meta.threshold))
    props[QUANTIZATION_KEY] = json.dumps(recipe, sort_keys=True)
    proto = onnx.load(str(int8_path))
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "real-vs-ai-detector"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(int8_path))


def recalibrate(settings: QuantizeSettings, run: Path, recipe: dict[str, Any]) -> tuple[float, float]:
    """Fit the int8 model's temperature and threshold on the run's validation split, as training does.

    int8 is a slightly different function; with the fp32 threshold, images close to it can change sides.
    The same validation images and target false-positive rate as the fp32 model's calibration are used.
    """
    int8 = OnnxDetector(settings.output)
    meta = int8.metadata
    images = split_images(run, "val")
    inputs, kept = preprocess_all([image.path for image in images], int8.preprocess)
    targets = np.array([class_index(images[i].label, meta.classes) for i in kept])
    logits = np.concatenate([int8.logits(inputs[start : start + 32]) for start in range(0, len(inputs), 32)])
    temperature = fit_temperature(logits, targets)
    ai = class_index(AI, meta.classes)
    target_fpr = float(meta.training_config.get("target_fpr", 0.02))
    p_ai = calibrated_probabilities(logits, temperature)[:, ai]
    threshold = threshold_for_fpr(p_ai, targets, target_fpr, ai_index=ai)
    recipe["recalibrated"] = {"temperature": temperature, "threshold": threshold, "val_images": len(kept)}
    carry_metadata(settings.model, settings.output, recipe, (temperature, threshold))
    log.info(
        "int8 calibration on %d validation images: temperature %.4g, threshold %.10g",
        len(kept),
        temperature,
        threshold,
    )
    return temperature, threshold


def evaluate(settings: QuantizeSettings, run: Path, recipe: dict[str, Any]) -> dict[str, Any]:
    """Compare both models on the run's test split and on the clock; print the table and the verdict."""
    fp32, int8 = OnnxDetector(settings.model), OnnxDetector(settings.output)
    test = split_images(run, "test")
    accuracy = compare_accuracy(fp32, int8, test)
    sample, _ = preprocess_all([image.path for image in test[:8]], fp32.preprocess)
    throughput = measure_throughput(
        settings.model,
        settings.output,
        sample,
        batch_sizes=settings.batch_sizes,
        threads=settings.threads,
        repeats=settings.repeats,
        images_per_run=settings.images_per_run,
        level=settings.optimization_level,
    )
    decision = verdict(accuracy, throughput, settings.max_accuracy_loss, settings.min_speedup)
    print(format_table(accuracy, throughput, settings.threads))
    extra = {
        "fp32_model": str(settings.model),
        "int8_model": str(settings.output),
        "fp32_version": fp32.version,
        "int8_version": int8.version,
        "fp32_megabytes": settings.model.stat().st_size / 1e6,
        "int8_megabytes": settings.output.stat().st_size / 1e6,
        "run": str(run),
        "providers": int8.session.get_providers(),
        "threads": settings.threads,
        "repeats": settings.repeats,
        "optimization_level": settings.optimization_level,
        "quantization": recipe,
    }
    return report(accuracy, throughput, decision, extra)


def main(argv: list[str] | None = None) -> int:
    return run_cli(QuantizeSettings, _quantize_and_judge, argv)


def _quantize_and_judge(settings: QuantizeSettings) -> int:
    # ONNX Runtime's quantiser logs one INFO line per adjusted weight scale on the root logger: keep ours only.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    run = settings.run or (settings.calibration if is_run_folder(settings.calibration) else None)
    report_path = settings.report or settings.output.with_suffix(".json")
    if not settings.model.is_file():
        raise FileNotFoundError(f"no model at {settings.model}: run `make export` first")
    if settings.output.resolve() == settings.model.resolve():
        raise ValueError("--output must differ from --model: the fp32 model is needed to judge the int8 one")
    if run is not None and not is_run_folder(run):
        raise FileNotFoundError(f"{run} is not a run folder (no split.csv)")
    recipe = quantize_model(settings)
    print(f"wrote {settings.output} ({settings.output.stat().st_size / 1e6:.1f} MB)")
    if run is None:
        print("not evaluated: pass --run runs/NAME to compare it with fp32 on a test split")
        return 0
    if settings.recalibrate:
        recalibrate(settings, run, recipe)
    result = evaluate(settings, run, recipe)
    if not result["ship"] and not settings.keep_rejected:
        settings.output.unlink()
        result["int8_model"] = None
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(result, indent=2) + "\n")
    if result["ship"]:
        print(f"verdict: ship int8 ({settings.output}); report {report_path}")
    else:
        kept = "kept (--keep-rejected)" if settings.keep_rejected else "deleted"
        print(f"verdict: do not ship int8 ({'; '.join(result['reasons'])}); {kept}; report {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
