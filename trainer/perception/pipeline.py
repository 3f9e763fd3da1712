"""One perception run: load, validate, split by session, search, train, test, export, track.

    result = run(RunConfig(data="capture/", out=Path("runs/p1"), trials=6))

The run's directory holds ``data/`` (the data report), ``checkpoints/`` (best and last),
``report/`` (test metrics and pictures), ``model/`` (ONNX and int8 ONNX) and ``summary.json``.
With a tracking URI every step is also in MLflow: the parent run has the parameters, per-epoch
metrics, the test metrics, every artefact and the model (a new version of the registered
``perception-detector``); each search trial is a nested run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infra.store import open_store
from trainer.perception.dataset import load_table, split_by_session
from trainer.perception.export import export_detector
from trainer.perception.metrics import write_report
from trainer.perception.search import search
from trainer.perception.train import TrainConfig, predict, train
from trainer.perception.validate import Thresholds, data_report, ensure_valid, write_data_report

Progress = Callable[[str], None]


class RunConfig(BaseModel):
    """Everything one run needs."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    data: str = Field(description="object-store URL or directory with the captured sessions")
    out: Path = Field(description="the run's directory")
    train: TrainConfig = Field(default_factory=TrainConfig)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    trials: int = Field(
        default=0, ge=0, le=200, description="Optuna trials before the final training (0: none)"
    )
    epochs_per_trial: int = Field(default=6, ge=1, le=100)
    search_timeout_s: float | None = Field(default=None, gt=0)
    val_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    split_seed: int = 0
    tracking_uri: str | None = Field(default=None, description="MLflow store; None: not tracked")
    experiment: str = "perception"
    register_model: bool = True
    export: bool = True
    tflite: bool = Field(default=False, description="export detector.tflite too (the tflite extra)")
    run_name: str = "perception"


def run(config: RunConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Do the run; raise :class:`~trainer.perception.validate.DatasetRefused` for bad data."""
    say = progress or (lambda _msg: None)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    store = open_store(config.data)
    say("loading frames")
    net = config.train.net
    table = load_table(store, size=(net.height, net.width))  # frames at the network's input size
    report = data_report(store, table, config.thresholds)
    write_data_report(report, out / "data")
    ensure_valid(report)
    splits = split_by_session(table, config.val_fraction, config.test_fraction, config.split_seed)
    sizes = {k: {"frames": len(v), "sessions": v.session_names()} for k, v in splits.items()}
    say(", ".join(f"{k} {len(v)} frames / {len(v.session_names())} sessions" for k, v in splits.items()))
    tracker = None
    if config.tracking_uri:
        from trainer.perception.tracking import Tracker

        tracker = Tracker(config.tracking_uri, config.experiment)
    if tracker is None:
        return _train_and_test(config, splits, sizes, None, say)
    params = config.model_dump(mode="json", exclude={"tracking_uri"})
    with tracker.run(config.run_name, params) as run_id:
        tracker.log_artifacts(out / "data", "data")
        result = _train_and_test(config, splits, sizes, tracker, say)
        result["mlflow"] = {
            "uri": tracker.uri,
            "run_id": run_id,
            "experiment": config.experiment,
        } | result.get("mlflow", {})
        (out / "summary.json").write_text(json.dumps(result, indent=1, default=str))
        tracker.log_artifacts(out / "report", "report")
        tracker.log_artifacts(out / "model", "detector") if (out / "model").exists() else None
        tracker.log_artifact(out / "summary.json")
    return result


def _train_and_test(
    config: RunConfig, splits: dict[str, Any], sizes: dict[str, Any], tracker: Any, say: Progress
) -> dict[str, Any]:
    out = config.out
    tuned = config.train
    trials: list[dict[str, Any]] = []
    if config.trials:
        say(f"search: {config.trials} trials of up to {config.epochs_per_trial} epochs")

        def on_trial(number: int, info: dict[str, Any]) -> None:
            trials.append({"trial": number} | info)
            say(f"trial {number}: {info['state'].lower()}, val score {info['value']}")

        tuned, study = search(
            splits,
            config.train,
            trials=config.trials,
            epochs_per_trial=config.epochs_per_trial,
            timeout_s=config.search_timeout_s,
            seed=config.train.seed,
            tracker=tracker,
            on_trial=on_trial,
        )
        if tracker is not None:
            tracker.log_metrics({"search_best_val_score": float(study.best_value)})

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        say(f"epoch {epoch}: loss {metrics['train_loss']:.4f}, val score {metrics['val_score']:.4f}")
        if tracker is not None:
            tracker.log_metrics(metrics, step=epoch)

    result = train(splits, tuned, out, on_epoch=on_epoch)
    test = splits["test"]
    probs = predict(result.model, test.images)
    metrics = write_report(test, probs, out / "report", {"best_epoch": result.best_epoch})
    summary: dict[str, Any] = {
        "splits": sizes,
        "config": tuned.model_dump(mode="json"),
        "best_epoch": result.best_epoch,
        "val_score": result.best_score,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.seconds, 1),
        "epochs": len(result.history),
        "trials": trials,
        "test": {
            t: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]} for t, m in metrics["tasks"].items()
        },
        "report": str(out / "report"),
    }
    if config.export:
        summary["export"] = export_detector(
            result.model, out / "model", splits["train"], test, tflite=config.tflite
        )
    if tracker is not None:
        tracker.log_metrics({f"test_{t}_{k}": v for t, m in summary["test"].items() for k, v in m.items()})
        from trainer.perception.train import to_input

        example = to_input(test.images[:2]).numpy()
        version = tracker.log_model(
            result.model, example, "perception-detector" if config.register_model else None
        )
        summary["mlflow"] = {"model_version": version}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
