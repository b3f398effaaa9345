"""Hyperparameter search with Optuna: ``python -m training.tune --data DIR --trials 20`` (``make tune``).

Searches batch size, dropout and learning rate (log scale), minimising the validation loss.
The study lives in a SQLite file, so running the command again adds trials to the same study,
and an interrupted search loses at most the trial in flight.  Trials whose validation loss lags
the median of earlier trials at the same epoch are pruned.  The best parameters go to a JSON
file that ``python -m training.train --params-file`` (``make train PARAMS=...``) takes.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import optuna

from detector.model import MissingWeightsError
from detector.settings import run_cli
from training.config import TUNED_PARAMETERS, TuneSettings
from training.logs import setup_logging
from training.train import TrainSettings, train

log = logging.getLogger("training.tune")


def _trial_settings(settings: TuneSettings, trial: optuna.Trial) -> TrainSettings:
    chosen = {
        "batch_size": trial.suggest_categorical("batch_size", settings.batch_sizes),
        "dropout": trial.suggest_float("dropout", 0.0, settings.max_dropout),
        "learning_rate": trial.suggest_float(
            "learning_rate", settings.min_learning_rate, settings.max_learning_rate, log=True
        ),
    }
    base = settings.model_dump(include=set(TrainSettings.model_fields))
    base.update(
        chosen,
        output_dir=settings.storage.parent / "trials",
        run_name=f"{settings.study_name}-trial-{trial.number:04d}",
        resume=None,
        params_file=None,
        evaluate=False,
    )
    return TrainSettings(**base)


def tune(settings: TuneSettings) -> Path:
    """Add ``settings.trials`` trials to the study; write and return the best-parameters file."""
    settings.storage.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=f"sqlite:///{settings.storage.resolve()}",
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )

    def objective(trial: optuna.Trial) -> float:
        def report(epoch: int, val_loss: float) -> None:
            trial.report(val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation loss {val_loss:.4f} at epoch {epoch}")

        result = train(_trial_settings(settings, trial), on_epoch_end=report)
        trial.set_user_attr("run_dir", str(result.run_dir))
        return result.best_val_loss

    study.optimize(objective, n_trials=settings.trials, timeout=settings.timeout, gc_after_trial=True)
    completed = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        raise RuntimeError("no trial of the study has completed yet")
    best = study.best_trial
    destination = settings.best_params_file or settings.storage.parent / "best_params.json"
    destination.write_text(
        json.dumps(
            {
                **{name: best.params[name] for name in TUNED_PARAMETERS},
                "val_loss": best.value,
                "trial": best.number,
                "study": settings.study_name,
                "storage": str(settings.storage),
                "completed_trials": len(completed),
            },
            indent=2,
        )
    )
    log.info("best of %d completed trials: #%d val loss %.4f %s", len(completed), best.number, best.value, best.params)
    return destination


def main(argv: list[str] | None = None) -> int:
    errors = (MissingWeightsError, FileNotFoundError, ValueError, RuntimeError)
    return run_cli(TuneSettings, _tune_and_report, argv, errors=errors)


def _tune_and_report(settings: TuneSettings) -> None:
    setup_logging()
    print(f"best parameters: {tune(settings)}")


if __name__ == "__main__":
    sys.exit(main())
