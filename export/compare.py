"""fp32 against int8, on a run's test split and on the clock: the figures that decide whether int8 ships.

Accuracy uses each model's own decisions (``detector.calibration.decide`` with the temperature and
threshold in its metadata), so it is the accuracy a user of the web app would see.  Speed is the
forward pass alone (preprocessing is the same code for both), measured with a fixed thread count,
fp32 and int8 interleaved run by run so that load from other processes hits both alike, and
reported as the median of the repeats.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from sklearn.metrics import roc_auc_score

from detector.calibration import calibrated_probabilities, decide
from detector.labels import AI, class_index
from detector.runtimes.onnx_runtime import INPUT_NAME, OUTPUT_NAME, OnnxDetector, available_providers
from export.images import preprocess_all
from training.data import Sample

OptimizationLevel = Literal["disable", "basic", "extended", "all"]
_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class AccuracyComparison:
    """Both models on the same preprocessed test images."""

    n: int
    fp32_accuracy: float
    int8_accuracy: float
    #: share of images given the same label by both models
    agreement: float
    #: largest |P_fp32 - P_int8| over images and classes (calibrated probabilities)
    max_probability_difference: float
    #: threshold-free ranking quality of P(ai), ``ai`` positive; None when the split has one class only.
    #: Tells "int8 changed the model" apart from "the threshold sits where small changes flip labels".
    fp32_roc_auc: float | None = None
    int8_roc_auc: float | None = None
    #: root-mean-square change of the logit margin (ai minus real) from fp32 to int8, beside the spread of
    #: the fp32 margins: how much int8 moves each image's score, whatever the threshold
    margin_rmse: float = 0.0
    fp32_margin_std: float = 0.0

    @property
    def accuracy_change_points(self) -> float:
        """int8 minus fp32, in percentage points (negative: int8 is worse)."""
        return 100.0 * (self.int8_accuracy - self.fp32_accuracy)


def compare_accuracy(
    fp32: OnnxDetector, int8: OnnxDetector, images: list[Sample], batch_size: int = 16
) -> AccuracyComparison:
    """Accuracy of each model, their agreement and their largest probability difference on ``images``."""
    if not images:
        raise ValueError("the run has no test images to evaluate on")
    if fp32.preprocess_config != int8.preprocess_config:
        raise ValueError("the fp32 and int8 models preprocess differently; quantise the same export")
    inputs, kept = preprocess_all([image.path for image in images], fp32.preprocess)
    truth = np.array([images[i].label for i in kept])
    models = {"fp32": fp32, "int8": int8}
    logits = {
        name: np.concatenate(
            [model.logits(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
        )
        for name, model in models.items()
    }
    probabilities = {
        name: calibrated_probabilities(logits[name], model.metadata.temperature) for name, model in models.items()
    }
    labels = {
        name: np.array([d.label for d in decide(probabilities[name], model.metadata.classes, model.metadata.threshold)])
        for name, model in models.items()
    }
    ai = class_index(AI, fp32.metadata.classes)
    margins = {name: 2 * logits[name][:, ai] - logits[name].sum(axis=1) for name in models}  # ai minus the other
    fp32_labels, int8_labels = labels["fp32"], labels["int8"]
    return AccuracyComparison(
        n=len(kept),
        fp32_accuracy=float((fp32_labels == truth).mean()),
        int8_accuracy=float((int8_labels == truth).mean()),
        agreement=float((fp32_labels == int8_labels).mean()),
        max_probability_difference=float(np.abs(probabilities["fp32"] - probabilities["int8"]).max()),
        fp32_roc_auc=_auc(truth == AI, probabilities["fp32"][:, ai]),
        int8_roc_auc=_auc(truth == AI, probabilities["int8"][:, ai]),
        margin_rmse=float(np.sqrt(np.mean((margins["int8"] - margins["fp32"]) ** 2))),
        fp32_margin_std=float(margins["fp32"].std()),
    )


def _auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(positive, scores)) if 0 < positive.sum() < len(positive) else None


@dataclass(frozen=True)
class Throughput:
    """Images per second of both models at one batch size: the median over repeats, and every repeat."""

    batch_size: int
    fp32: float
    int8: float
    fp32_runs: list[float] = field(default_factory=list)
    int8_runs: list[float] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.int8 / self.fp32


def session(
    path: Path, threads: int, level: OptimizationLevel = "all", providers: list[str] | None = None
) -> ort.InferenceSession:
    """An ONNX Runtime session with a fixed thread count and graph optimisation level."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = _LEVELS[level]
    return ort.InferenceSession(str(path), sess_options=options, providers=providers or available_providers())


def _images_per_second(runner: ort.InferenceSession, batch: np.ndarray, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        runner.run([OUTPUT_NAME], {INPUT_NAME: batch})
    return iterations * len(batch) / (time.perf_counter() - start)


def measure_throughput(
    fp32_path: Path,
    int8_path: Path,
    sample: np.ndarray,
    *,
    batch_sizes: list[int],
    threads: int,
    repeats: int,
    images_per_run: int,
    level: OptimizationLevel = "all",
) -> list[Throughput]:
    """Forward-pass images/s of both models per batch size, on real preprocessed images (``sample``)."""
    runners = {"fp32": session(fp32_path, threads, level), "int8": session(int8_path, threads, level)}
    results = []
    for batch_size in batch_sizes:
        batch = np.ascontiguousarray(np.resize(sample, (batch_size, *sample.shape[1:])), dtype=np.float32)
        iterations = max(1, images_per_run // batch_size)
        runs: dict[str, list[float]] = {"fp32": [], "int8": []}
        for runner in runners.values():  # warm-up: first runs allocate and pick kernels
            _images_per_second(runner, batch, 2)
        for _ in range(repeats):
            for name, runner in runners.items():
                runs[name].append(_images_per_second(runner, batch, iterations))
        results.append(
            Throughput(
                batch_size=batch_size,
                fp32=statistics.median(runs["fp32"]),
                int8=statistics.median(runs["int8"]),
                fp32_runs=runs["fp32"],
                int8_runs=runs["int8"],
            )
        )
    return results


@dataclass(frozen=True)
class Verdict:
    ship: bool
    reasons: list[str]


def verdict(
    accuracy: AccuracyComparison, throughput: list[Throughput], max_accuracy_loss: float, min_speedup: float
) -> Verdict:
    """Ship only when int8 is faster at every batch size measured and loses less than the allowed accuracy."""
    reasons = []
    for result in throughput:
        if result.speedup <= min_speedup:
            reasons.append(f"batch {result.batch_size}: speed-up {result.speedup:.2f}x is not above {min_speedup:g}x")
    loss = -accuracy.accuracy_change_points
    if loss >= 100 * max_accuracy_loss:
        reasons.append(f"accuracy loss {loss:.2f} points is not under {100 * max_accuracy_loss:g}")
    return Verdict(ship=not reasons, reasons=reasons)


def report(
    accuracy: AccuracyComparison, throughput: list[Throughput], decision: Verdict, extra: dict[str, Any]
) -> dict[str, Any]:
    """Everything measured, as JSON-ready data."""
    return {
        **extra,
        "accuracy": {**asdict(accuracy), "accuracy_change_points": accuracy.accuracy_change_points},
        "throughput": [{**asdict(t), "speedup": t.speedup} for t in throughput],
        "ship": decision.ship,
        "reasons": decision.reasons,
    }


def format_table(accuracy: AccuracyComparison, throughput: list[Throughput], threads: int) -> str:
    """A plain-text table of the figures, fp32 beside int8."""
    rows = [
        ("", "fp32", "int8", "change"),
        (
            f"test accuracy (n={accuracy.n})",
            f"{100 * accuracy.fp32_accuracy:.2f} %",
            f"{100 * accuracy.int8_accuracy:.2f} %",
            f"{accuracy.accuracy_change_points:+.2f} points",
        ),
    ]
    for t in throughput:
        rows.append(
            (
                f"images/s, batch {t.batch_size}, {threads} threads",
                f"{t.fp32:.1f}",
                f"{t.int8:.1f}",
                f"{t.speedup:.2f}x",
            )
        )
    if accuracy.fp32_roc_auc is not None and accuracy.int8_roc_auc is not None:
        change = accuracy.int8_roc_auc - accuracy.fp32_roc_auc
        rows.append(("test ROC-AUC", f"{accuracy.fp32_roc_auc:.4f}", f"{accuracy.int8_roc_auc:.4f}", f"{change:+.4f}"))
    rows.append(("label agreement", "", f"{100 * accuracy.agreement:.2f} %", ""))
    rows.append(
        (
            "logit margin: fp32 spread, int8 RMS change",
            f"{accuracy.fp32_margin_std:.3f}",
            f"{accuracy.margin_rmse:.3f}",
            "",
        )
    )
    rows.append(("max |P_fp32 - P_int8|", "", f"{accuracy.max_probability_difference:.4f}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
