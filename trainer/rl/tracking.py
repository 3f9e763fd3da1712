"""RL runs in MLflow (experiment ``reinforcement-learning``), where a store is configured
(``TrainConfig.mlflow``, or ``PADDOCK_MLFLOW``): the run's settings and hyperparameters, every
iteration's reward, completion and lap times, the summary and the model files. Tracking never fails
a training run: a store that cannot be reached is one warning
(:func:`trainer.perception.tracking.record_quietly`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.perception.tracking import Tracker

RL_EXPERIMENT = "reinforcement-learning"


def track_rl(result: Any, files: Any, config: Any, summary_file: str) -> str | None:
    """Log a finished run (``trainer.rl.train``'s result, model files and config; typed loosely
    so this module needs nothing of the trainer's and makes no import cycle)."""
    from trainer.perception.tracking import record_quietly

    def record(tracker: Tracker) -> str:
        params: dict[str, Any] = {
            "model": files.directory.name,
            "track": config.track,
            "workers": config.workers,
            "seed": config.seed,
            "algorithm": files.metadata.training_algorithm,
            "hyperparameters": files.hyperparameters.model_dump(mode="json"),
        }
        with tracker.run(f"{files.directory.name} on {config.track}", params) as run_id:
            for it in result.history:
                values = {k: v for k, v in asdict(it).items() if isinstance(v, int | float) and v is not None}
                tracker.log_metrics(values, step=it.iteration)
            tracker.log_metrics(
                {"steps": result.steps, "episodes": result.episodes, "iterations": result.iterations}
            )
            for name in (summary_file, "model.zip", "metrics.jsonl"):
                path = result.out / name
                if path.exists():
                    tracker.log_artifact(path)
            tracker.set_tags({"paddock.kind": "rl", "paddock.stop_reason": result.stop_reason[:250]})
        return run_id

    return record_quietly(config.mlflow, RL_EXPERIMENT, record)
