"""Hyperparameter search with Optuna: a bounded number of trials, TPE sampling, median pruning.

Each trial trains for at most ``epochs_per_trial`` epochs and reports its validation score after
every epoch; a trial running below the median of earlier trials at the same epoch is pruned. The
validation split only is used (the test split is never seen by the search).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from trainer.perception.dataset import PerceptionTable
from trainer.perception.train import TrainConfig, train

TrialCallback = Callable[[int, dict[str, Any]], None]


def suggest(trial: optuna.Trial | optuna.trial.FixedTrial, base: TrainConfig, epochs: int) -> TrainConfig:
    """The trial's configuration: learning rate, weight decay, network width, dropout, dense units."""
    net = base.net.model_copy(
        update={
            "width_multiplier": trial.suggest_categorical("width_multiplier", [0.75, 1.0, 1.5]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.4),
            "hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
        }
    )
    return base.model_copy(
        update={
            "lr": trial.suggest_float("lr", 5e-4, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
            "epochs": epochs,
            "net": net,
        }
    )


def search(
    splits: dict[str, PerceptionTable],
    base: TrainConfig,
    *,
    trials: int = 8,
    epochs_per_trial: int = 6,
    timeout_s: float | None = None,
    seed: int = 0,
    on_trial: TrialCallback | None = None,
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
    tracker: Any = None,
) -> tuple[TrainConfig, optuna.Study]:
    """Search ``trials`` configurations; return the best one (with ``base``'s epoch count) and the
    study. With a :class:`~trainer.perception.tracking.Tracker` each trial is a nested MLflow run
    (its parameters, its per-epoch metrics, its end state)."""
    if trials < 1:
        raise ValueError("trials must be >= 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )

    def objective(trial: optuna.Trial) -> float:
        config = suggest(trial, base, epochs_per_trial)

        def report(epoch: int, metrics: dict[str, float]) -> None:
            if on_epoch is not None:
                on_epoch(trial.number, epoch, metrics)
            if tracker is not None:
                tracker.log_metrics(metrics, step=epoch)
            trial.report(metrics["val_score"], epoch)
            if trial.should_prune():
                if tracker is not None:
                    tracker.set_tags({"optuna.state": "PRUNED"})
                raise optuna.TrialPruned()

        if tracker is None:
            return train(splits, config, on_epoch=report).best_score
        with tracker.run(f"trial-{trial.number}", trial.params, nested=True):
            score = train(splits, config, on_epoch=report).best_score
            tracker.set_tags({"optuna.state": "COMPLETE"})
            tracker.log_metrics({"best_val_score": score})
            return score

    def after(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(trial.number, {"state": trial.state.name, "value": trial.value, "params": trial.params})

    study.optimize(objective, n_trials=trials, timeout=timeout_s, callbacks=[after], catch=())
    best = study.best_trial
    tuned = suggest(optuna.trial.FixedTrial(best.params), base, base.epochs)
    return tuned, study
