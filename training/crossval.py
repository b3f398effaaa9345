"""Compare training recipes on sources never seen in training: ``python -m training.crossval``.

Group k-fold over sources: each fold holds whole sources out as its test split, draws validation
sources (for early stopping, the temperature and the threshold) from the rest, and trains on what
remains, with the same ``training.train`` every run uses.  Every image is then predicted once by a
model that never saw its source, so the pooled out-of-fold predictions measure what a user meets:
images from a new generator or a new camera.  A random split cannot say that: sources seen in
training are easy, and a model can score well on them by recognising the source rather than
generation.

Recipes are named sets of training settings (``--recipes FILE``, JSON ``{"name": {"setting": value}}``);
each runs on every fold.  ``summary.md`` in the output folder ranks them, and is rewritten after
every run, so a stopped comparison keeps what it finished.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from detector.labels import AI
from detector.settings import run_cli, tool_config
from training.config import TrainSettings
from training.data import Sample, discover, draw_groups, write_manifest
from training.logs import setup_logging
from training.metrics import format_group_table, group_table
from training.train import train

log = logging.getLogger("training.crossval")


class CrossvalSettings(TrainSettings):
    """Group k-fold over sources; the training settings are the base every recipe starts from."""

    model_config = tool_config(prog="python -m training.crossval")

    folds: int = Field(4, ge=2, description="number of source folds")
    recipes: Path | None = Field(
        None, description='JSON {"name": {"setting": value, ...}}; default: one recipe, the base'
    )
    only: list[str] = Field([], description="run only these recipes of the file, comma-separated")
    max_per_group: int | None = Field(
        None, ge=1, description="at most this many images per (source, label), drawn with the seed (quick comparisons)"
    )
    output_dir: Path = Field(Path("runs/crossval"), description="fold manifests, runs and the summary go here")


def subsample(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """At most ``limit`` images of each (source, label), drawn reproducibly."""
    if limit is None:
        return samples
    rng = np.random.default_rng(seed)
    by_group: dict[tuple[str, str], list[Sample]] = {}
    for sample in samples:
        by_group.setdefault((sample.group, sample.label), []).append(sample)
    kept = []
    for members in by_group.values():
        chosen = rng.permutation(len(members))[:limit]
        kept += [members[i] for i in sorted(chosen)]
    return sorted(kept, key=lambda s: str(s.path))


def make_folds(samples: list[Sample], folds: int, val_fraction: float, seed: int) -> list[list[Sample]]:
    """Each fold's samples with train/val/test assigned by whole sources; every source is tested once."""
    labels = [s.label for s in samples]
    groups = [s.group for s in samples]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    rng = np.random.default_rng(seed)
    result = []
    for rest, test in splitter.split(np.zeros(len(samples)), labels, groups):
        rest_samples = [samples[i] for i in rest]
        candidates = sorted({s.group for s in rest_samples})
        val = draw_groups(rest_samples, [candidates[i] for i in rng.permutation(len(candidates))], val_fraction)
        test_set = set(test.tolist())
        fold = []
        for i, s in enumerate(samples):
            split = "test" if i in test_set else "val" if s.group in val else "train"
            fold.append(replace(s, split=split))
        result.append(fold)
    return result


def _read_predictions(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "evaluation" / "predictions.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled out-of-fold figures: balanced accuracy at each fold's shipped threshold and at P(ai) 0.5, AUC."""
    y = np.array([r["label"] == AI for r in rows])
    p = np.array([float(r["p_ai"]) for r in rows])
    said_ai = np.array([r["predicted"] == AI for r in rows])
    return {
        "n": len(rows),
        "balanced_accuracy": float(balanced_accuracy_score(y, said_ai)),
        "balanced_accuracy_at_0.5": float(balanced_accuracy_score(y, p >= 0.5)),
        "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None,
        "real_flagged": float(said_ai[~y].mean()),
        "ai_caught": float(said_ai[y].mean()),
    }


def write_summary(output: Path, results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| recipe | folds | OOF balanced acc. (shipped threshold) | OOF balanced acc. (P(ai) ≥ 0.5) | OOF ROC-AUC "
        "| real flagged | AI caught | per-fold balanced acc. |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, result in sorted(results.items(), key=lambda kv: -(kv[1]["pooled"]["roc_auc"] or 0)):
        pooled = result["pooled"]
        folds = ", ".join(f"{f['balanced_accuracy']:.3f}" for f in result["folds"])
        auc = "n/a" if pooled["roc_auc"] is None else f"{pooled['roc_auc']:.3f}"
        lines.append(
            f"| {name} | {len(result['folds'])} | {pooled['balanced_accuracy']:.3f} "
            f"| {pooled['balanced_accuracy_at_0.5']:.3f} | {auc} | {pooled['real_flagged']:.3f} "
            f"| {pooled['ai_caught']:.3f} | {folds} |"
        )
    text = "\n".join(lines) + "\n"
    (output / "summary.md").write_text(text)
    (output / "summary.json").write_text(json.dumps(results, indent=2))
    return text


def crossval(settings: CrossvalSettings) -> dict[str, dict[str, Any]]:
    if settings.data is None:
        raise ValueError("--data is required (a folder with ai/ and real/, or a CSV manifest with a source column)")
    recipes: dict[str, dict[str, Any]] = {"base": {}}
    if settings.recipes is not None:
        recipes = json.loads(Path(settings.recipes).read_text())
    if settings.only:
        missing = sorted(set(settings.only) - set(recipes))
        if missing:
            raise ValueError(f"--only names recipes not in {settings.recipes}: {missing}; it has {sorted(recipes)}")
        recipes = {name: recipes[name] for name in settings.only}
    unknown = {key for recipe in recipes.values() for key in recipe} - set(TrainSettings.model_fields)
    if unknown:
        raise ValueError(f"recipes set unknown training settings: {sorted(unknown)}")
    output = settings.output_dir
    output.mkdir(parents=True, exist_ok=True)
    samples = subsample(discover(settings.data), settings.max_per_group, settings.seed)
    sources = Counter(s.group for s in samples)
    if len(sources) < settings.folds:
        raise ValueError(f"{len(sources)} sources cannot make {settings.folds} source folds")
    folds = make_folds(samples, settings.folds, settings.val_fraction, settings.seed)
    manifests = []
    for k, fold in enumerate(folds):
        manifest = output / f"fold-{k}.csv"
        write_manifest(fold, manifest)
        manifests.append(manifest)
        counts = Counter(s.split for s in fold)
        test_sources = sorted({s.group for s in fold if s.split == "test"})
        log.info(
            "fold %d: train %d, val %d, test %d images; test sources: %s",
            k,
            counts["train"],
            counts["val"],
            counts["test"],
            ", ".join(test_sources),
        )
    base = settings.model_dump(include=set(TrainSettings.model_fields))
    base.update(split_by="random", holdout_sources=[], resume=None, params_file=None, evaluate=True)
    results: dict[str, dict[str, Any]] = {}
    for name, overrides in recipes.items():
        pooled_rows: list[dict[str, str]] = []
        fold_results = []
        for k, manifest in enumerate(manifests):
            run = train(
                TrainSettings(
                    **{**base, **overrides, "data": manifest, "output_dir": output, "run_name": f"{name}-fold{k}"}
                )
            )
            rows = _read_predictions(run.run_dir)
            pooled_rows += rows
            fold_results.append({"fold": k, **summarise(rows)})
            results[name] = {"settings": overrides, "folds": fold_results, "pooled": summarise(pooled_rows)}
            print(write_summary(output, results), flush=True)
        table = group_table(
            [r["source"] for r in pooled_rows],
            [r["label"] for r in pooled_rows],
            [r["predicted"] for r in pooled_rows],
            [float(r["p_ai"]) for r in pooled_rows],
        )
        (output / f"{name}-sources.txt").write_text(format_group_table(table, "per source (out of fold)"))
        results[name]["sources"] = table
        write_summary(output, results)
    return results


def main(argv: list[str] | None = None) -> int:
    return run_cli(CrossvalSettings, _crossval, argv)


def _crossval(settings: CrossvalSettings) -> None:
    setup_logging()
    crossval(settings)


if __name__ == "__main__":
    sys.exit(main())
