"""Whole sources held out: the source split, equal weights per source, source folds, the shortcut probe."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from helpers import FAST_TRAINING, run_module, write_dataset

from training.data import discover, read_manifest, source_weights, split_by_source, split_samples


def write_sourced_dataset(root: Path, per_source: int = 4) -> Path:
    """Eight sources and a manifest naming them: ``src/0`` holds both labels (like a repository of pairs),
    the others one label each (even: ai, odd: real)."""
    rows = []
    for index in range(8):
        folder = write_dataset(root / f"s{index}", per_class=per_source, seed=index)
        labels = ("ai", "real") if index == 0 else ("real",) if index % 2 else ("ai",)
        for label in labels:
            rows += [(p.relative_to(root), label, f"src/{index}") for p in sorted((folder / label).iterdir())]
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "source", "generator"])
        writer.writerows([(path, label, source, f"gen-{source}") for path, label, source in rows])
    return manifest


def test_each_source_lands_in_one_split_and_val_and_test_hold_both_labels(tmp_path: Path) -> None:
    samples = discover(write_sourced_dataset(tmp_path))
    split = split_by_source(samples, val_fraction=0.2, test_fraction=0.2, seed=3)
    splits_of = defaultdict(set)
    for sample in split:
        splits_of[sample.source].add(sample.split)
    assert all(len(names) == 1 for names in splits_of.values()), splits_of
    for name in ("train", "val", "test"):
        assert {s.label for s in split if s.split == name} == {"ai", "real"}, name
    assert split_by_source(list(reversed(samples)), 0.2, 0.2, seed=3) == split
    # a random split keeps each image's source and generator for the per-source tables too
    assert all(s.source and s.generator for s in split_samples(samples, 0.2, 0.2, seed=3))


def test_holdout_sources_are_the_test_split_and_unknown_ones_are_named(tmp_path: Path) -> None:
    samples = discover(write_sourced_dataset(tmp_path))
    split = split_by_source(samples, 0.2, 0.2, seed=0, holdout=["src/0"])
    assert {s.source for s in split if s.split == "test"} == {"src/0"}
    with pytest.raises(ValueError, match="src/nope"):
        split_by_source(samples, 0.2, 0.2, seed=0, holdout=["src/nope"])


def test_balanced_sampling_gives_every_source_and_label_the_same_weight(tmp_path: Path) -> None:
    samples = discover(write_sourced_dataset(tmp_path))[:-3]  # groups of unequal size
    totals: Counter[tuple[str | None, str]] = Counter()
    for sample, weight in zip(samples, source_weights(samples), strict=True):
        totals[(sample.source, sample.label)] += weight
    assert all(total == pytest.approx(1.0) for total in totals.values()), totals


def test_training_split_by_source_and_source_folds_predict_every_image_once_out_of_fold(tmp_path: Path) -> None:
    manifest = write_sourced_dataset(tmp_path / "data", per_source=3)
    recipes = tmp_path / "recipes.json"
    recipes.write_text(json.dumps({"plain": {}, "balanced": {"sampling": "balanced", "augment_policy": "strong"}}))
    output = tmp_path / "cv"
    run_module(
        "training.crossval",
        "--data", str(manifest),
        "--folds", "2",
        "--epochs", "1",
        "--no-pretrained",
        "--recipes", str(recipes),
        "--output-dir", str(output),
        *FAST_TRAINING,
    )  # fmt: skip
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary) == {"plain", "balanced"}
    images = {str(p.resolve()) for p in discover(manifest) for p in [p.path]}
    for name in summary:
        predicted = []
        for fold in range(2):
            with (output / f"{name}-fold{fold}" / "evaluation" / "predictions.csv").open() as handle:
                predicted += [row["path"] for row in csv.DictReader(handle)]
        assert sorted(predicted) == sorted(images)  # each image once, by a model that never saw its source
        assert 0 <= summary[name]["pooled"]["balanced_accuracy"] <= 1
    assert "| plain |" in (output / "summary.md").read_text()
    report = (output / "plain-fold0" / "evaluation" / "report.txt").read_text()
    assert "per source" in report and "per generator" in report


def test_crosscalibration_scores_each_unseen_source_by_a_calibration_fitted_without_it(tmp_path: Path) -> None:
    manifest = write_sourced_dataset(tmp_path / "data", per_source=3)
    run_module(
        "training.train",
        "--data", str(manifest),
        "--split-by", "source",
        "--holdout-sources", "src/0,src/1,src/2",
        "--val-fraction", "0.2",
        "--epochs", "1",
        "--no-pretrained",
        "--no-evaluate",
        "--output-dir", str(tmp_path / "runs"),
        "--run-name", "src",
        *FAST_TRAINING,
    )  # fmt: skip
    run = tmp_path / "runs" / "src"
    printed = run_module("training.crosscalibrate", "--run", str(run), "--workers", "0", "--device", "cpu").stdout
    report = json.loads((run / "evaluation" / "crosscalibration.json").read_text())
    unseen = [s for s in read_manifest(run / "split.csv") if s.split != "train"]
    assert {row["source"] for row in report["leave_one_source_out"]} == {s.source for s in unseen}
    rows = report["rows"]
    assert rows["each source fitted on all the others, measured on all unseen sources"]["images"] == len(unseen)
    tested = rows["fitted on the validation sources, measured on the test sources"]
    assert tested["images"] == sum(s.split == "test" for s in unseen) and tested["sources"] == 3
    fitted = report["fitted_on_all_unseen_sources"]
    assert fitted["temperature"] > 0 and 0 <= fitted["real_threshold"] <= fitted["threshold"] <= 1
    assert "| fitted on the validation sources, measured on the test sources |" in printed
    # where a source of the test split was trained on too (a random split), nothing is unseen: it says so
    rows_of_split = list(csv.DictReader((run / "split.csv").open()))
    trained = next(row for row in rows_of_split if row["split"] == "train")
    trained["source"] = next(row["source"] for row in rows_of_split if row["split"] == "test")
    with (run / "split.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows_of_split[0]))
        writer.writeheader()
        writer.writerows(rows_of_split)
    refused = run_module("training.crosscalibrate", "--run", str(run), "--device", "cpu", returncode=2)
    assert "--split-by source" in refused.stderr and "Traceback" not in refused.stderr


def test_train_refuses_holdout_sources_on_a_random_split(tmp_path: Path) -> None:
    import subprocess
    import sys

    manifest = write_sourced_dataset(tmp_path / "data", per_source=3)
    result = subprocess.run(
        [sys.executable, "-m", "training.train", "--data", str(manifest), "--holdout-sources", "src/0",
         "--no-pretrained", "--output-dir", str(tmp_path / "runs"), *FAST_TRAINING],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--holdout-sources needs --split-by source" in result.stderr


def test_shortcut_probe_finds_a_shortcut_where_there_is_one(tmp_path: Path) -> None:
    # the toy images differ in how well they compress (smooth gradients vs noise): bytes per pixel gives the label away
    manifest = write_sourced_dataset(tmp_path / "data", per_source=10)
    out = tmp_path / "shortcuts.json"
    run_module("training.shortcuts", "--data", str(manifest), "--folds", "2", "--output", str(out))
    results = json.loads(out.read_text())
    figures = results["file (size, aspect, bytes/pixel, JPEG quality, chroma) · gradient boosting"]
    assert figures["random split"] > 0.9 and figures["unseen sources"] > 0.9
