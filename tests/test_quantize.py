"""int8 static QDQ quantisation: the quantised model loads like the fp32 one, answers like it, and is judged."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import run_module
from test_model import GRACE_HOPPER

from detector.runtimes.onnx_runtime import METADATA_KEY, OnnxDetector
from export.quantize import QUANTIZATION_KEY, VERSION_SUFFIX
from training.data import read_manifest

#: a short timing, so the test checks that the figures are produced, not what they are
QUICK = ["--repeats", "1", "--images-per-run", "8"]


def run_quantize(
    model: Path, calibration: Path, output: Path, *options: str, returncode: int = 0, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``python -m export.quantize`` on ``model``, calibrated on ``calibration``, writing ``output`` and its report."""
    paths = ["--model", str(model), "--calibration", str(calibration), "--output", str(output)]
    return run_module("export.quantize", *paths, *options, returncode=returncode, timeout=timeout)


@pytest.fixture(scope="module")
def quantized(trained_run: Path, exported_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run's export quantised by the command (calibrated on its train split), kept whatever the verdict."""
    output = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    result = run_quantize(exported_model, trained_run, output, "--keep-rejected", *QUICK)
    assert "verdict:" in result.stdout and "test accuracy" in result.stdout
    return output


def test_int8_model_is_qdq_and_keeps_the_metadata(exported_model: Path, quantized: Path) -> None:
    fp32, int8 = OnnxDetector(exported_model), OnnxDetector(quantized)
    assert int8.version == fp32.version + VERSION_SUFFIX
    # everything but the version and the calibration (int8 gets its own, fitted on the validation split)
    recalibrated = {"version", "temperature", "threshold", "test_metrics"}
    int8_fields, fp32_fields = int8.metadata.to_dict(), fp32.metadata.to_dict()
    assert {k: v for k, v in int8_fields.items() if k not in recalibrated} == {
        k: v for k, v in fp32_fields.items() if k not in recalibrated
    }
    proto = onnx.load(str(quantized))
    props = {p.key: p.value for p in proto.metadata_props}
    fp32_props = {p.key: p.value for p in onnx.load(str(exported_model)).metadata_props}
    assert set(fp32_props) | {QUANTIZATION_KEY} == set(props)
    assert {k: v for k, v in props.items() if k not in {METADATA_KEY, QUANTIZATION_KEY, *recalibrated}} == {
        k: v for k, v in fp32_props.items() if k not in {METADATA_KEY, *recalibrated}
    }
    assert float(props["threshold"]) == int8.metadata.threshold and props["version"] == int8.version
    recipe = json.loads(props[QUANTIZATION_KEY])
    assert recipe["format"] == "QDQ" and recipe["per_channel"] is True and recipe["calibration_images"] > 0
    assert recipe["recalibrated"]["temperature"] == int8.metadata.temperature
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # int8 weights: far smaller than the fp32 file
    assert quantized.stat().st_size < exported_model.stat().st_size / 2


def test_int8_gives_the_fp32_label_on_most_real_images(
    trained_run: Path, exported_model: Path, quantized: Path
) -> None:
    fp32, int8 = OnnxDetector(exported_model), OnnxDetector(quantized)
    images = [GRACE_HOPPER, *sorted((trained_run.parent.parent / "data").rglob("*.*"))]
    batch = np.stack([fp32.preprocess(path) for path in images])
    # the tiny run's calibration is degenerate (separable validation images give the lowest temperature
    # and a threshold near 1), so thresholded labels near it flip either way with the CPU's thread count;
    # the model's own view, the sign of its logit margin, is what must agree (0.92 of these images here)
    margin_fp32, margin_int8 = (np.diff(model.logits(batch), axis=1)[:, 0] for model in (fp32, int8))
    agreement = np.mean(np.sign(margin_fp32) == np.sign(margin_int8))
    assert agreement >= 0.8, (margin_fp32, margin_int8)
    # the same function up to int8 noise: the logit margins move together
    assert np.corrcoef(margin_fp32, margin_int8)[0, 1] > 0.7


def test_evaluation_report(quantized: Path, trained_run: Path) -> None:
    report = json.loads(quantized.with_suffix(".json").read_text())
    test_images = sum(1 for sample in read_manifest(trained_run / "split.csv") if sample.split == "test")
    assert report["accuracy"]["n"] == test_images
    assert 0 <= report["accuracy"]["agreement"] <= 1 and report["accuracy"]["max_probability_difference"] >= 0
    assert [t["batch_size"] for t in report["throughput"]] == [1, 8]
    assert all(t["fp32"] > 0 and t["int8"] > 0 for t in report["throughput"])
    assert isinstance(report["ship"], bool) and report["int8_version"].endswith(VERSION_SUFFIX)


def test_a_rejected_model_is_deleted_and_the_command_still_succeeds(
    trained_run: Path, exported_model: Path, tmp_path: Path
) -> None:
    output = tmp_path / "rejected.int8.onnx"
    result = run_quantize(
        exported_model,
        trained_run,
        output,
        "--min-speedup",
        "1000",  # no int8 model is 1000x faster: forces the "do not ship" verdict
        "--max-calibration-images",
        "4",
        "--no-recalibrate",
        *QUICK,
    )
    assert "verdict: do not ship" in result.stdout and "deleted" in result.stdout
    assert not output.exists()
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["ship"] is False and report["int8_model"] is None and report["reasons"]
    assert "recalibrated" not in report["quantization"]


def test_quantize_fails_cleanly_without_calibration_images(exported_model: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_quantize(exported_model, tmp_path / "empty", tmp_path / "m.onnx", returncode=2, timeout=120)
    assert "no calibration images" in result.stderr and "Traceback" not in result.stderr
