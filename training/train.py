"""Fine-tune the detector on a folder of images: ``python -m training.train --data DIR`` (or ``make train``).

A run folder (``runs/<name>/``) receives the settings, the split, a log of each epoch, the best
checkpoint (``best.pt``, lowest validation loss), the last one (``last.pt``, with the optimizer
state so ``--resume`` continues where it stopped) and, after calibration and evaluation, the
final ``model.pt`` with its temperature, threshold and test metrics.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from detector.checkpoint import Checkpoint, CheckpointMetadata, load_checkpoint, save_checkpoint
from detector.model import MissingWeightsError, build_model
from detector.preprocessing import PreprocessConfig
from detector.settings import run_cli
from training.augment import training_augmentation
from training.config import EvaluateSettings, SharedWithEvaluation, TrainSettings
from training.data import (
    Sample,
    check_readable,
    discover,
    fingerprint,
    read_manifest,
    source_weights,
    split_by_source,
    split_samples,
    write_manifest,
)
from training.engine import (
    cross_entropy,
    make_loader,
    make_optimizer,
    predict_logits,
    resolve_device,
    seed_everything,
    train_one_epoch,
)
from training.logs import setup_logging

log = logging.getLogger("training")

#: called after each epoch with (epoch, validation loss); tuning uses it to report and prune
EpochCallback = Callable[[int, float], None]


@dataclass
class TrainResult:
    run_dir: Path
    best_val_loss: float
    epochs_run: int
    best_checkpoint: Path


def _run_dir(settings: TrainSettings) -> Path:
    if settings.resume is not None:
        return settings.resume.parent if settings.resume.is_file() else settings.resume
    name = settings.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
    return settings.output_dir / name


def _resumed_settings(settings: TrainSettings, run_dir: Path) -> TrainSettings:
    """The run's saved settings, with what this invocation set explicitly (e.g. more ``--epochs``) on top."""
    saved = json.loads((run_dir / "config.json").read_text())
    explicit = {name: getattr(settings, name) for name in settings.model_fields_set}
    return TrainSettings(**{**saved, **explicit})


def _run_settings(settings: TrainSettings) -> tuple[TrainSettings, Path]:
    """The settings to train with (a resumed run's own, see :func:`_resumed_settings`) and the run folder."""
    run_dir = _run_dir(settings)
    if settings.resume is not None:
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"cannot resume: {run_dir} is not a run folder (no config.json)")
        return _resumed_settings(settings, run_dir), run_dir
    if settings.data is None:
        raise ValueError("--data is required (a folder with ai/ and real/, or a CSV manifest)")
    return settings, run_dir


def train(settings: TrainSettings, on_epoch_end: EpochCallback | None = None) -> TrainResult:
    """Train as ``settings`` say; return where the run went and how good its best epoch was."""
    settings, run_dir = _run_settings(settings)
    seed_everything(settings.seed)
    # the model before the data: a missing weights file fails before any image is read
    model, pretrained_from = build_model(
        settings.architecture, dropout=settings.dropout, pretrained=settings.pretrained, weights=settings.weights
    )
    samples = read_manifest(run_dir / "split.csv") if settings.resume is not None else _split(settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run_dir)
    device = resolve_device(settings.device)
    preprocess = PreprocessConfig(input_size=settings.input_size)
    samples, train_loader, val_loader = load_data(settings, samples, run_dir, preprocess, device)

    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, settings.learning_rate, settings.weight_decay, settings.backbone_lr_scale)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    metadata = CheckpointMetadata(
        architecture=settings.architecture,
        dropout=settings.dropout,
        pretrained_weights=pretrained_from,
        preprocessing=preprocess.to_dict(),
        training_config=json.loads(settings.model_dump_json()),
        data_fingerprint=fingerprint(samples),
        version=settings.model_version or f"{settings.architecture}-{run_dir.name}",
    )

    state = {"epoch": 0, "best_val_loss": math.inf, "stale_epochs": 0, "history": []}
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if settings.resume is not None:
        state = _resume(last_path, model, optimizer)
        log.info("resumed from %s at epoch %d", last_path, state["epoch"])

    while state["epoch"] < settings.epochs and state["stale_epochs"] < settings.patience:
        epoch = state["epoch"] + 1
        started = time.perf_counter()
        fit = train_one_epoch(
            model,
            train_loader,
            optimizer,
            device,
            scaler,
            description=f"epoch {epoch}/{settings.epochs}",
            max_batches=settings.max_batches,
            label_smoothing=settings.label_smoothing,
        )
        val_loss, val_accuracy = validate(model, val_loader, device)
        record = {
            "epoch": epoch,
            "train_loss": fit.loss,
            "train_accuracy": fit.accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "seconds": round(time.perf_counter() - started, 2),
        }
        improved = val_loss < state["best_val_loss"]
        log.info(
            "epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f | %.1fs%s",
            epoch,
            fit.loss,
            fit.accuracy,
            val_loss,
            val_accuracy,
            record["seconds"],
            " (best)" if improved else "",
        )
        state["history"].append(record)
        state["epoch"] = epoch
        state["best_val_loss"] = min(state["best_val_loss"], val_loss)
        state["stale_epochs"] = 0 if improved else state["stale_epochs"] + 1
        save_epoch(run_dir, record, model, optimizer, metadata, state, improved)
        if on_epoch_end is not None:
            on_epoch_end(epoch, val_loss)
    if state["stale_epochs"] >= settings.patience:
        log.info("early stop: validation loss did not improve for %d epochs", settings.patience)

    if settings.evaluate:
        from training.evaluate import evaluate_run

        shared = settings.model_dump(include=set(SharedWithEvaluation.model_fields))
        evaluate_run(EvaluateSettings(run=run_dir, **shared))
    return TrainResult(run_dir, state["best_val_loss"], state["epoch"], best_path)


def load_data(
    settings: TrainSettings,
    samples: list[Sample],
    run_dir: Path,
    preprocess: PreprocessConfig,
    device: torch.device,
) -> tuple[list[Sample], DataLoader, DataLoader]:
    """The split's readable images, and loaders over its training and validation parts.

    Writes the run's ``split.csv`` (without the unreadable files, which go to ``skipped.json``) and its
    ``config.json``.
    """
    samples, skipped = check_readable(samples)
    write_manifest(samples, run_dir / "split.csv")
    (run_dir / "skipped.json").write_text(json.dumps(skipped, indent=2))
    (run_dir / "config.json").write_text(settings.model_dump_json(indent=2))
    by_split = {name: [s for s in samples if s.split == name] for name in ("train", "val", "test")}
    log.info(
        "run %s on %s: %s images (train %d, val %d, test %d), %d skipped",
        run_dir,
        device,
        len(samples),
        *(len(v) for v in by_split.values()),
        len(skipped),
    )
    if not by_split["train"] or not by_split["val"]:
        raise ValueError("the split has no training or no validation images")
    loader_args = dict(batch_size=settings.batch_size, workers=settings.workers, seed=settings.seed, device=device)
    train_loader = make_loader(
        by_split["train"],
        preprocess,
        shuffle=True,
        augment=training_augmentation(settings.augment_policy, settings.random_aspect) if settings.augment else None,
        weights=source_weights(by_split["train"]) if settings.sampling == "balanced" else None,
        **loader_args,
    )
    val_loader = make_loader(by_split["val"], preprocess, shuffle=False, **loader_args)
    return samples, train_loader, val_loader


def validate(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """The validation loss and accuracy on the whole split (NaN without images).

    Never cut short by ``max_batches``: the loader is not shuffled, so a prefix of it would be a few
    sources only, and tuning trials that differ in batch size would be compared on different images.
    """
    logits, targets = predict_logits(model, loader, device, description="validate")
    accuracy = float((logits.argmax(1) == targets).mean()) if len(targets) else float("nan")
    return cross_entropy(logits, targets), accuracy


def save_epoch(
    run_dir: Path,
    record: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    metadata: CheckpointMetadata,
    state: dict[str, Any],
    improved: bool,
) -> None:
    """Append the epoch to ``history.jsonl``; write ``last.pt`` (with the state to resume) and, if best, ``best.pt``."""
    with (run_dir / "history.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if improved:
        save_checkpoint(run_dir / "best.pt", Checkpoint(weights, metadata))
    save_checkpoint(run_dir / "last.pt", Checkpoint(weights, metadata, {**state, "optimizer": optimizer.state_dict()}))


def _split(settings: TrainSettings) -> list[Sample]:
    """The data of ``settings.data``, split at random or by source as the settings say."""
    samples = discover(settings.data)
    if settings.split_by == "source":
        return split_by_source(
            samples, settings.val_fraction, settings.test_fraction, settings.seed, settings.holdout_sources
        )
    if settings.holdout_sources:
        raise ValueError("--holdout-sources needs --split-by source")
    return split_samples(samples, settings.val_fraction, settings.test_fraction, settings.seed)


def _resume(last_path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    if not last_path.is_file():
        raise FileNotFoundError(f"cannot resume: {last_path} does not exist")
    checkpoint = load_checkpoint(last_path)
    if checkpoint.training_state is None:
        raise ValueError(f"cannot resume: {last_path} holds no training state")
    model.load_state_dict(checkpoint.state_dict)
    state = dict(checkpoint.training_state)
    optimizer.load_state_dict(state.pop("optimizer"))
    return state


def main(argv: list[str] | None = None) -> int:
    return run_cli(TrainSettings, _train_and_report, argv, errors=(MissingWeightsError, FileNotFoundError, ValueError))


def _train_and_report(settings: TrainSettings) -> None:
    result = train(settings)
    print(
        f"run folder: {result.run_dir}  best validation loss: {result.best_val_loss:.4f}  epochs: {result.epochs_run}"
    )


if __name__ == "__main__":
    sys.exit(main())
