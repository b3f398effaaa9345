"""Calibrate a trained run and measure it: ``python -m training.evaluate --run runs/NAME`` (``make evaluate``).

1. Temperature fitted on the validation split, so the reported confidence means what it says.
2. Decision threshold on P(ai) chosen on the validation split for a target false-positive rate on
   real photos (default 2 %): calling a real photo fake is the costly mistake for a newsroom; and a
   ``real`` threshold below it for a target share of AI images let through as real (default 10 %).
   Between the two the verdict is ``unsure``.
3. On the test split: ``metrics.json``, ``report.txt`` and PNG plots (confusion matrix, ROC curve,
   reliability diagram).
4. ``--perturb``: the test split again under JPEG re-compression, down-scaling, crop and blur,
   written as ``perturbations.json`` and ``perturbations.txt``.
5. ``model.pt`` in the run folder: ``best.pt`` with the temperature, threshold and test metrics.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.calibration import calibrated_probabilities, decide
from detector.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from detector.labels import AI, class_index
from detector.preprocessing import PreprocessConfig
from detector.settings import run_cli
from training.augment import PERTURBATIONS
from training.calibrate import fit_calibration
from training.config import EvaluateSettings, SharedWithEvaluation
from training.data import Sample, read_manifest
from training.engine import make_loader, predict_logits, resolve_device
from training.logs import setup_logging
from training.metrics import compute_metrics, format_group_table, format_report, group_table, unsure_band
from training.plots import save_plots

log = logging.getLogger("training.evaluate")

#: the headline numbers copied into the checkpoint's metadata
SUMMARY_KEYS = ("n", "accuracy", "precision", "recall", "f1", "roc_auc", "ece", "unsure", "accuracy_outside_unsure")


def run_folder(path: Path) -> Path:
    """The finished run folder ``path`` is or is in (a run folder, or a checkpoint inside one)."""
    run_dir = path.parent if path.is_file() else path
    if not (run_dir / "best.pt").is_file() or not (run_dir / "split.csv").is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished run folder (needs best.pt and split.csv)")
    return run_dir


def split_logits(
    model: torch.nn.Module,
    samples: list[Sample],
    split: str,
    preprocess: PreprocessConfig,
    settings: SharedWithEvaluation,
    device: torch.device,
    perturbation: str = "clean",
) -> tuple[np.ndarray, np.ndarray]:
    """The model's logits and the targets of one split of a run's samples, optionally perturbed."""
    loader = make_loader(
        [s for s in samples if s.split == split],
        preprocess,
        batch_size=settings.batch_size,
        workers=settings.workers,
        shuffle=False,
        augment=PERTURBATIONS[perturbation],
        device=device,
    )
    return predict_logits(model, loader, device, description=f"{split} {perturbation}")


def evaluate_run(settings: EvaluateSettings) -> dict[str, Any]:
    """Calibrate ``best.pt`` of a run, evaluate it on the test split, write reports and ``model.pt``."""
    run_dir = run_folder(settings.run)
    output = settings.output or run_dir / "evaluation"
    output.mkdir(parents=True, exist_ok=True)
    device = resolve_device(settings.device)
    checkpoint = load_checkpoint(run_dir / "best.pt")
    meta = checkpoint.metadata
    model = model_from_checkpoint(checkpoint).to(device)
    samples = read_manifest(run_dir / "split.csv")
    preprocess = meta.preprocess_config

    def logits_of(split: str, perturbation: str = "clean") -> tuple[np.ndarray, np.ndarray]:
        return split_logits(model, samples, split, preprocess, settings, device, perturbation)

    val_logits, val_targets = logits_of("val")
    ai = class_index(AI, meta.classes)
    calibration = fit_calibration(val_logits, val_targets, settings.target_fpr, settings.target_miss_rate, ai)
    temperature, threshold, real_threshold = calibration.temperature, calibration.threshold, calibration.real_threshold
    log.info(
        "calibration on %d validation images: temperature %.3f, threshold %.3f, real threshold %.3f",
        len(val_targets),
        temperature,
        threshold,
        real_threshold,
    )

    test_logits, test_targets = logits_of("test")
    probabilities = calibrated_probabilities(test_logits, temperature)
    metrics = compute_metrics(test_targets, probabilities, threshold, meta.classes)
    metrics["uncalibrated_ece"] = compute_metrics(
        test_targets, calibrated_probabilities(test_logits, 1.0), threshold, meta.classes
    )["ece"]
    metrics.update(
        unsure_band(
            [d.label for d in decide(probabilities, meta.classes, threshold, real_threshold)],
            [meta.classes[t] for t in test_targets],
        ),
        temperature=temperature,
        real_threshold=real_threshold,
        target_fpr=settings.target_fpr,
        target_miss_rate=settings.target_miss_rate,
        model_version=meta.version,
        data_fingerprint=meta.data_fingerprint,
    )
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    report = format_report(metrics, title=f"Test split of {run_dir.name} (model {meta.version})")
    report += (
        f"\ntemperature {temperature:.4f}  threshold on P(ai) {threshold:.4f}"
        f" (target FPR on real photos {settings.target_fpr:.1%})"
        f"\nreal threshold {real_threshold:.4f} (target share of AI images called real"
        f" {settings.target_miss_rate:.1%}): unsure {metrics['unsure']:.1%} of test images,"
        f" accuracy outside the band {metrics['accuracy_outside_unsure']:.1%}\n"
    )
    test_samples = [s for s in samples if s.split == "test"]
    if len(test_samples) == len(test_targets):
        report += _write_groups(test_samples, test_targets, probabilities, threshold, meta.classes, output)
    else:  # an image failed to decode: rows and predictions no longer line up
        log.warning("%d test images could not be decoded; no per-source tables", len(test_samples) - len(test_targets))
    (output / "report.txt").write_text(report)
    save_plots(test_targets, probabilities, threshold, meta.classes, output)
    print(report)

    if settings.perturb:
        table = {}
        for name in PERTURBATIONS:
            logits, targets = (test_logits, test_targets) if name == "clean" else logits_of("test", name)
            result = compute_metrics(targets, calibrated_probabilities(logits, temperature), threshold, meta.classes)
            table[name] = {key: result[key] for key in ("n", "accuracy", "recall", "roc_auc")}
        (output / "perturbations.json").write_text(json.dumps(table, indent=2))
        text = _perturbation_table(table)
        (output / "perturbations.txt").write_text(text)
        print(text)
        metrics["perturbations"] = table

    meta.temperature, meta.threshold, meta.real_threshold = temperature, threshold, real_threshold
    meta.test_metrics = {key: metrics[key] for key in SUMMARY_KEYS}
    save_checkpoint(run_dir / "model.pt", checkpoint)
    log.info("calibrated model written to %s; reports in %s", run_dir / "model.pt", output)
    return metrics


def _write_groups(
    samples: list, targets: np.ndarray, probabilities: np.ndarray, threshold: float, classes: list[str], output: Path
) -> str:
    """Write ``predictions.csv`` (one row per test image) and the per-source and per-generator tables."""
    labels = [classes[t] for t in targets]
    predicted = [d.label for d in decide(probabilities, classes, threshold)]
    p_ai = probabilities[:, class_index(AI, classes)]
    with (output / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "source", "generator", "p_ai", "predicted"])
        for sample, label, p, said in zip(samples, labels, p_ai, predicted, strict=True):
            writer.writerow([sample.path, label, sample.group, sample.generator or "", f"{p:.6f}", said])
    text = ""
    tables = {}
    for key, title in (("source", "per source"), ("generator", "per generator")):
        groups = [s.group if key == "source" else (s.generator or s.group) for s in samples]
        tables[key] = group_table(groups, labels, predicted, p_ai)
        text += "\n" + format_group_table(tables[key], title)
    (output / "groups.json").write_text(json.dumps(tables, indent=2))
    return text


def _perturbation_table(table: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'perturbation':<22}{'n':>6}{'accuracy':>10}{'ai recall':>11}{'ROC-AUC':>9}"]
    for name, row in table.items():
        auc = "n/a" if row["roc_auc"] is None else f"{row['roc_auc']:.3f}"
        lines.append(f"{name:<22}{row['n']:>6}{row['accuracy']:>10.3f}{row['recall']:>11.3f}{auc:>9}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run_cli(EvaluateSettings, _evaluate, argv)


def _evaluate(settings: EvaluateSettings) -> None:
    setup_logging()
    evaluate_run(settings)


if __name__ == "__main__":
    sys.exit(main())
