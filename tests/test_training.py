"""Training, evaluation and tuning, run as a user runs them: the command-line entry points in real processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FAST_TRAINING, run_module, write_dataset

from detector.checkpoint import load_checkpoint, load_model
from training.config import TrainSettings
from training.data import read_manifest
from training.engine import cross_entropy, make_loader, predict_logits

FAST = FAST_TRAINING


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_two_epoch_run_writes_a_checkpoint_that_reproduces_the_trained_model(trained_run: Path) -> None:
    history = _history(trained_run)
    assert [h["epoch"] for h in history] == [1, 2]
    best = min(history, key=lambda h: h["val_loss"])

    model, meta = load_model(trained_run / "best.pt")
    val = [s for s in read_manifest(trained_run / "split.csv") if s.split == "val"]
    loader = make_loader(val, meta.preprocess_config, batch_size=8, workers=0, shuffle=False)
    logits, targets = predict_logits(model, loader, torch.device("cpu"))
    # the reloaded weights give the validation loss that was measured in training
    assert cross_entropy(logits, targets) == pytest.approx(best["val_loss"], abs=1e-5)

    calibrated, calibrated_meta = load_model(trained_run / "model.pt")
    batch = torch.from_numpy(np.stack([loader.dataset[i][0] for i in range(len(val))]))
    with torch.no_grad():
        np.testing.assert_array_equal(model(batch).numpy(), calibrated(batch).numpy())


def test_checkpoint_metadata_is_complete(trained_run: Path) -> None:
    raw = torch.load(trained_run / "model.pt", weights_only=True)
    assert raw["format"] == "real-vs-ai-detector/1"
    meta = load_checkpoint(trained_run / "model.pt").metadata
    assert meta.architecture == "efficientnet_lite0" and meta.pretrained_weights.startswith("efficientnet_lite0:")
    assert meta.classes == ["ai", "real"]
    assert meta.preprocessing["input_size"] == 96 and len(meta.preprocessing["mean"]) == 3
    assert meta.temperature > 0 and 0.0 <= meta.threshold <= 1.0
    assert set(meta.test_metrics) >= {"accuracy", "precision", "recall", "f1", "roc_auc", "ece"}
    assert len(meta.data_fingerprint) == 64 and meta.version == "efficientnet_lite0-tiny"
    assert meta.training_config["epochs"] == 2 and meta.created_at


def test_evaluation_reports(trained_run: Path) -> None:
    evaluation = trained_run / "evaluation"
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["n"] == 4  # 15 % of 24 images, stratified: 2 per class
    assert len(metrics["confusion_matrix"]) == 2 and sum(map(sum, metrics["confusion_matrix"])) == 4
    assert "accuracy" in (evaluation / "report.txt").read_text()
    for name in ("confusion_matrix.png", "roc_curve.png", "reliability.png"):
        assert (evaluation / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    out = trained_run.parent / "perturbed"
    run_module(
        "training.evaluate",
        "--run",
        str(trained_run),
        "--perturb",
        "--output",
        str(out),
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--device",
        "cpu",
    )
    table = json.loads((out / "perturbations.json").read_text())
    assert list(table) == [
        "clean",
        "jpeg_q90",
        "jpeg_q75",
        "jpeg_q50",
        "downscale_0.5x",
        "center_crop_0.5",
        "square_crop",
        "gaussian_blur_r1.5",
    ]
    assert all(row["n"] == 4 for row in table.values())
    assert table["clean"]["accuracy"] == metrics["accuracy"]
    assert "jpeg_q50" in (out / "perturbations.txt").read_text()


def test_resume_continues_from_the_last_epoch(trained_run: Path) -> None:
    copy = trained_run.parent / "resumed"
    shutil.copytree(trained_run, copy)
    run_module("training.train", "--resume", str(copy), "--epochs", "3", "--no-evaluate", "--workers", "0")
    history = _history(copy)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[:2] == _history(trained_run)


def test_tuned_parameters_fill_in_unless_set_explicitly(tmp_path: Path) -> None:
    params = tmp_path / "best_params.json"
    params.write_text(json.dumps({"batch_size": 4, "dropout": 0.35, "learning_rate": 1e-4, "val_loss": 0.1}))
    tuned = TrainSettings(data=tmp_path, params_file=params)
    assert (tuned.batch_size, tuned.dropout, tuned.learning_rate) == (4, 0.35, 1e-4)
    assert TrainSettings(data=tmp_path, params_file=params, batch_size=16).batch_size == 16
    # a recipe file sits below the tuned values: --config recipe.json --params-file best_params.json
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"batch_size": 32, "dropout": 0.2, "epochs": 2}))
    both = TrainSettings(data=tmp_path, config=recipe, params_file=params)
    assert (both.batch_size, both.dropout, both.epochs) == (4, 0.35, 2)
    assert TrainSettings(data=tmp_path, config=recipe, params_file=params, dropout=0.5).dropout == 0.5


def test_tuning_study_persists_across_invocations(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", per_class=6)
    storage = tmp_path / "tune" / "study.db"
    common = [
        "--data",
        str(data),
        "--storage",
        str(storage),
        "--epochs",
        "2",
        "--max-batches",
        "1",
        "--batch-sizes",
        "4",
        "--batch-sizes",
        "8",
        "--input-size",
        "64",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    run_module("training.tune", *common, "--trials", "2")
    first = json.loads((tmp_path / "tune" / "best_params.json").read_text())
    assert first["completed_trials"] == 2 and first["batch_size"] in (4, 8)
    assert 1e-5 <= first["learning_rate"] <= 3e-3 and 0 <= first["dropout"] <= 0.5

    run_module("training.tune", *common, "--trials", "1")
    second = json.loads((tmp_path / "tune" / "best_params.json").read_text())
    assert second["completed_trials"] + len(_pruned(storage)) == 3
    assert second["val_loss"] <= first["val_loss"]


def _pruned(storage: Path) -> list:
    import optuna

    study = optuna.load_study(study_name="detector", storage=f"sqlite:///{storage}")
    return study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
