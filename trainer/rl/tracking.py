"""RL runs in MLflow (experiment ``reinforcement-learning``), where a store is configured
(``TrainConfig.mlflow``, or ``PADDOCK_MLFLOW``): the run's settings and hyperparameters, every
iteration's reward, completion and lap times, the summary and the model files, and the policy
exported for the car (``model.onnx``, as ``paddock rl export`` writes it) as a new version of the
registered model named as the model folder. Tracking never fails a training run: a store that
cannot be reached is one warning (:func:`trainer.perception.tracking.record_quietly`)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.perception.tracking import Tracker

log = logging.getLogger(__name__)

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
            _register(tracker, result.out, files.directory.name)
        return run_id

    return record_quietly(config.mlflow, RL_EXPERIMENT, record)


def _register(tracker: Tracker, out: Path, name: str) -> str | None:
    """Export the trained policy to ONNX (into a scratch folder: the run's own files stay as they
    were) and register it; a policy the car cannot run (a lidar model) is logged, not registered."""
    from trainer.rl.export import export
    from trainer.rl.files import ModelFileError

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path, _ = export(out, Path(tmp))
        except ModelFileError as exc:
            log.warning("not registered in MLflow: %s", exc)
            tracker.set_tags({"paddock.registered": "no: the car cannot run this policy"})
            return None
        return tracker.log_onnx(path, name)
