"""The ``rl`` job, as the trainer agent runs it: write the three files, (optionally) fetch the clone's
parent, train within the budget reporting each iteration as job progress, evaluate, export to ONNX,
upload to ``models/{name}/{version}/`` and register with the hub (the parent in the lineage).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from schemas.dataset import model_prefix
from schemas.ids import check_name
from schemas.messages import JobProgress, JobResult, ModelRef, RlParams
from trainer.progress import ProgressSink, job_sink
from trainer.rl.files import (
    HYPERPARAMETERS_FILE,
    METADATA_FILE,
    REGISTERED_FILE,
    REWARD_FILE,
    Hyperparameters,
    parent_ref,
)
from trainer.rl.monitor import IterationStats

UPLOADED = (
    METADATA_FILE,
    HYPERPARAMETERS_FILE,
    REWARD_FILE,
    "model.zip",
    "model.onnx",
    "model_card.json",
    "training.json",
    "metrics.jsonl",
    "reward.png",
    "completion.png",
)
# TrainConfig fields a job's ``options`` may set.
OPTIONS = (
    "steps_per_episode",
    "max_iterations",
    "max_steps",
    "width",
    "height",
    "obstacles",
    "randomize",
    "bot_cars",
    "bot_speed",
    "lane_change",
)


def write_model_files(params: RlParams, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / METADATA_FILE).write_text(json.dumps(params.model_metadata, indent=4))
    hyper = Hyperparameters().model_dump() | params.hyperparameters
    (directory / HYPERPARAMETERS_FILE).write_text(json.dumps(hyper, indent=4))
    (directory / REWARD_FILE).write_text(params.reward_function)


def fetch_parent(ref: ModelRef, store: Any, directory: Path) -> Path:
    """The clone's parent from the object store into ``directory`` (its files and SB3 weights)."""
    directory.mkdir(parents=True, exist_ok=True)
    prefix = model_prefix(ref.name, ref.version)
    for name in (METADATA_FILE, HYPERPARAMETERS_FILE, REWARD_FILE, "model.zip", "training.json"):
        key = f"{prefix}{name}"
        if store.exists(key):
            (directory / name).write_bytes(store.get(key))
    (directory / REGISTERED_FILE).write_text(json.dumps({"name": ref.name, "version": ref.version}))
    return directory


def run_rl_job(
    params: RlParams,
    settings: Any,
    *,
    job: str,
    console: Console | None = None,
    sink: ProgressSink | None = None,
) -> JobResult:
    """Run one ``rl`` job (see the module docstring); raises on failure."""
    from infra.store import open_store
    from trainer.rl.train import TrainConfig, train

    started = time.monotonic()
    console = console or Console(stderr=True)
    version = check_name(
        params.model_version or time.strftime("%Y%m%d-%H%M%S", time.gmtime()), "model version"
    )
    run_dir = Path(settings.work_dir) / job
    model_dir = run_dir / "model"
    write_model_files(params, model_dir)
    store = open_store(settings.store)
    parent_dir = fetch_parent(params.clone, store, run_dir / "parent") if params.clone else None
    own_sink = sink is None
    sink = sink or job_sink(settings.broker, job, "rl", settings.topic_prefix)

    def progress(stats: IterationStats) -> None:
        metrics = {
            "mean_reward": stats.mean_reward,
            "completion_pct": stats.completion_pct,
            "episodes": float(stats.episodes),
            "steps": float(stats.steps),
        }
        metrics |= {f"episodes_{k}": float(v) for k, v in stats.statuses.items()}
        if stats.best_lap_time is not None:
            metrics["best_lap_time_s"] = stats.best_lap_time
        sink.emit(
            JobProgress(
                job=job,
                kind="rl",
                state="running",
                stage="training",
                ts=time.time(),
                epoch=stats.iteration,
                step=stats.steps,
                metrics=metrics,
            )
        )

    try:
        extra: dict[str, Any] = {k: v for k, v in params.options.items() if k in OPTIONS}
        if settings.workers or params.workers:
            extra["workers"] = settings.workers or params.workers
        config = TrainConfig(
            model_dir=model_dir,
            track=params.track,
            minutes=params.minutes,
            seed=params.seed,
            clone=parent_dir,
            race_type=params.race_type,
            live=False,
            **extra,
        )
        result = train(config, console, on_iteration=progress)
        sink.emit(JobProgress(job=job, kind="rl", state="running", stage="evaluating", ts=time.time()))
        metrics = _evaluate_and_export(model_dir, params)
        artifacts = _upload(store, model_dir, params.model_name, version)
        metrics |= {
            "iterations": float(result.iterations),
            "episodes": float(result.episodes),
            "steps": float(result.steps),
            "training_s": result.elapsed_s,
        }
        if settings.hub:
            _register(settings, model_dir, params.model_name, version, job, metrics, parent_ref(parent_dir))
        return JobResult(
            job=job,
            kind="rl",
            status="succeeded",
            ts=time.time(),
            model=ModelRef(name=params.model_name, version=version),
            artifacts=artifacts,
            metrics=metrics,
            duration_s=time.monotonic() - started,
        )
    finally:
        if own_sink:
            sink.close()


def _evaluate_and_export(model_dir: Path, params: RlParams) -> dict[str, float]:
    from trainer.rl.evaluate import EvalConfig, evaluate
    from trainer.rl.export import export

    export(model_dir)
    if not params.evaluate_trials:
        return {}
    max_time_s = float(params.options.get("eval_max_time_s", 180.0))
    report = evaluate(
        EvalConfig(
            model_dir=model_dir,
            track=params.track,
            trials=params.evaluate_trials,
            race_type=params.race_type,
            max_time_s=max_time_s,
            **{
                k: params.options[k]
                for k in ("obstacles", "bot_cars", "bot_speed", "lane_change")
                if k in params.options
            },
        )
    )
    summary = report.summary
    return {f"eval_{k}": float(v) for k, v in summary.items() if isinstance(v, int | float)}


def _upload(store: Any, model_dir: Path, name: str, version: str) -> dict[str, str]:
    prefix = model_prefix(name, version)
    artifacts = {}
    for file in UPLOADED:
        path = model_dir / file
        if path.exists():
            store.put(f"{prefix}{file}", path.read_bytes())
            artifacts[file] = f"{prefix}{file}"
    return artifacts


def _register(
    settings: Any,
    model_dir: Path,
    name: str,
    version: str,
    job: str,
    metrics: dict[str, float],
    parent: str | None,
) -> dict[str, Any]:
    from trainer.rl.register import register

    return register(
        model_dir, settings.hub, settings.hub_token, name, version, job=job, metrics=metrics, parent=parent
    )
