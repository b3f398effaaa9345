"""How a run's calibration carries over to unseen sources: ``python -m training.crosscalibrate --run RUN``.

``training.evaluate`` fits the temperature and both thresholds on the validation sources and measures
them on the test sources: one draw of a few sources each way. Whether P(ai) and the thresholds mean
the same on *any* new source is a question about many draws, and a run split by source has two sets
of sources it never trained on. This tool scores the same model's calibration

* fitted on the validation sources, measured on the test sources (what ``evaluate`` ships);
* the other way round;
* fitted on all the unseen sources but one and measured on that one, for each in turn (leave one source
  out), pooled over the test sources and over all of them: what fitting on every unseen source at hand
  would give on a source beyond them;

and states the calibration that fitting on all of them would ship. It changes no checkpoint: which
calibration ships is a decision docs/model.md records with these figures.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from detector.calibration import decide
from detector.checkpoint import load_checkpoint, model_from_checkpoint
from detector.labels import AI, class_index
from detector.settings import run_cli
from training.calibrate import Calibration, fit_calibration
from training.config import CrossCalibrateSettings
from training.data import read_manifest
from training.engine import resolve_device
from training.evaluate import run_folder, split_logits
from training.logs import setup_logging
from training.metrics import expected_calibration_error, unsure_band


@dataclass(frozen=True)
class _Unseen:
    """The logits, targets and sources of a run's images from sources it never trained on (val, then test)."""

    logits: np.ndarray
    targets: np.ndarray
    sources: np.ndarray
    is_test: np.ndarray


def _figures(
    part: np.ndarray, unseen: _Unseen, probabilities: np.ndarray, verdicts: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """Balanced accuracy, AUC, ECE and the verdicts' rates over the images of ``part`` (a mask)."""
    targets, p, said = unseen.targets[part], probabilities[part], verdicts[part]
    is_ai = targets == class_index(AI, classes)
    called_ai = said == AI
    caught = float(called_ai[is_ai].mean()) if is_ai.any() else None  # None: no image of that label here
    flagged = float(called_ai[~is_ai].mean()) if (~is_ai).any() else None
    recalls = [recall for recall in (caught, None if flagged is None else 1 - flagged) if recall is not None]
    both = caught is not None and flagged is not None
    outside = unsure_band(list(said), [classes[t] for t in targets])
    return {
        "images": int(part.sum()),
        "sources": len(set(unseen.sources[part])),
        "balanced_accuracy": float(np.mean(recalls)),
        "roc_auc": float(roc_auc_score(is_ai, p[:, class_index(AI, classes)])) if both else None,
        "ece": expected_calibration_error(p, targets),
        "real_flagged": flagged,
        "ai_caught": caught,
        "unsure": outside["unsure"],
        "accuracy_outside_unsure": None
        if np.isnan(outside["accuracy_outside_unsure"])
        else outside["accuracy_outside_unsure"],
    }


def _apply(calibration: Calibration, logits: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    probabilities = calibration.probabilities(logits)
    verdicts = decide(probabilities, classes, calibration.threshold, calibration.real_threshold)
    return probabilities, np.array([d.label for d in verdicts], dtype=object)


def crosscalibrate(settings: CrossCalibrateSettings) -> dict[str, Any]:
    """Score the calibration of ``best.pt`` fitted on one set of unseen sources and measured on another."""
    run_dir = run_folder(settings.run)
    samples = read_manifest(run_dir / "split.csv")
    unseen_sources = {s.group for s in samples if s.split != "train"}
    trained = {s.group for s in samples if s.split == "train"} & unseen_sources
    if trained:
        raise ValueError(
            f"{run_dir} trained on {len(trained)} of its validation and test sources (e.g. {sorted(trained)[0]}): "
            "nothing there is unseen; train with --split-by source"
        )
    if len(unseen_sources) < 3:
        raise ValueError(f"{run_dir} has {len(unseen_sources)} unseen sources; leaving one out needs at least 3")
    device = resolve_device(settings.device)
    checkpoint = load_checkpoint(run_dir / "best.pt")
    classes = list(checkpoint.metadata.classes)
    ai = class_index(AI, classes)
    model = model_from_checkpoint(checkpoint).to(device)
    parts = []
    for split in ("val", "test"):
        logits, targets = split_logits(model, samples, split, checkpoint.metadata.preprocess_config, settings, device)
        rows = [s for s in samples if s.split == split]
        if len(rows) != len(targets):
            raise ValueError(f"{len(rows) - len(targets)} {split} images of {run_dir} could not be decoded")
        parts.append((logits, targets, np.array([s.group for s in rows]), np.full(len(rows), split == "test")))
    unseen = _Unseen(*(np.concatenate(columns) for columns in zip(*parts, strict=True)))

    def fit(mask: np.ndarray) -> Calibration:
        if len(set(unseen.targets[mask])) < 2:
            raise ValueError(
                f"the sources {sorted(set(unseen.sources[mask]))} hold one label only: a calibration needs both"
            )
        return fit_calibration(
            unseen.logits[mask], unseen.targets[mask], settings.target_fpr, settings.target_miss_rate, ai
        )

    rows: dict[str, dict[str, Any]] = {}
    for fitted_on, measured_on, name in (
        (~unseen.is_test, unseen.is_test, "fitted on the validation sources, measured on the test sources"),
        (unseen.is_test, ~unseen.is_test, "fitted on the test sources, measured on the validation sources"),
    ):
        calibration = fit(fitted_on)
        probabilities, verdicts = np.zeros_like(unseen.logits), np.empty(len(unseen.targets), dtype=object)
        probabilities[measured_on], verdicts[measured_on] = _apply(calibration, unseen.logits[measured_on], classes)
        rows[name] = {**_figures(measured_on, unseen, probabilities, verdicts, classes), **vars(calibration)}

    probabilities, verdicts = np.zeros_like(unseen.logits), np.empty(len(unseen.targets), dtype=object)
    per_source = []
    for source in sorted(set(unseen.sources)):
        held = unseen.sources == source
        calibration = fit(~held)
        probabilities[held], verdicts[held] = _apply(calibration, unseen.logits[held], classes)
        figures = _figures(held, unseen, probabilities, verdicts, classes)
        per_source.append({"source": source, **figures, **vars(calibration)})
    everything = np.ones(len(unseen.targets), dtype=bool)
    for measured_on, name in ((unseen.is_test, "the test sources"), (everything, "all unseen sources")):
        rows[f"each source fitted on all the others, measured on {name}"] = _figures(
            measured_on, unseen, probabilities, verdicts, classes
        )
    report = {
        "run": str(run_dir),
        "target_fpr": settings.target_fpr,
        "target_miss_rate": settings.target_miss_rate,
        "rows": rows,
        "leave_one_source_out": per_source,
        "fitted_on_all_unseen_sources": vars(fit(everything)),
    }
    output = settings.output or run_dir / "evaluation" / "crosscalibration.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, allow_nan=False))
    print(format_report(report))
    return report


def format_report(report: dict[str, Any]) -> str:
    """The rows as a Markdown table, the per-source figures of leaving one out, and the all-sources calibration."""
    lines = [
        "| calibration | images | sources | balanced acc. | ROC-AUC | ECE | real flagged | AI caught | unsure | "
        "accuracy outside |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in report["rows"].items():
        lines.append(
            f"| {name} | {row['images']} | {row['sources']} | {row['balanced_accuracy']:.3f} | "
            f"{_rate(row['roc_auc'])} | {row['ece']:.3f} | {_rate(row['real_flagged'])} | {_rate(row['ai_caught'])} | "
            f"{row['unsure']:.3f} | "
            f"{_rate(row['accuracy_outside_unsure'])} |"
        )
    lines += [
        "",
        "Leaving one source out (its calibration fitted on all the other unseen sources):",
        "",
        "| source | images | temperature | threshold | real flagged | AI caught | unsure |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["leave_one_source_out"]:
        lines.append(
            f"| {row['source']} | {row['images']} | {row['temperature']:.3f} | {row['threshold']:.3f} | "
            f"{_rate(row['real_flagged'])} | {_rate(row['ai_caught'])} | {row['unsure']:.3f} |"
        )
    fitted = report["fitted_on_all_unseen_sources"]
    lines += [
        "",
        f"Fitted on all unseen sources: temperature {fitted['temperature']:.3f}, threshold {fitted['threshold']:.3f}, "
        f"real threshold {fitted['real_threshold']:.3f}",
    ]
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    """A rate, or a dash where it is undefined (no image of that label, or no verdict outside the band)."""
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    return run_cli(CrossCalibrateSettings, _crosscalibrate, argv, errors=(FileNotFoundError, ValueError))


def _crosscalibrate(settings: CrossCalibrateSettings) -> None:
    setup_logging()
    crosscalibrate(settings)


if __name__ == "__main__":
    sys.exit(main())
