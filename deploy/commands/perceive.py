"""``paddock perceive``: check perception datasets, train the obstacle and surface classifiers,
list the tracked runs."""

import importlib.util
import json
from pathlib import Path
from typing import Annotated

import typer

from deploy.errors import UserError, WorkFailed
from deploy.options import JsonOpt, mlflow_option, nested, parse_sets, set_option, store_option

if importlib.util.find_spec("torch") is None:  # listed only where it works
    raise ImportError("paddock perceive needs the train extra (torch; script/setup installs it)")

perceive_app = typer.Typer(
    help="Perception: validate captured datasets, train and measure the obstacle-ahead and surface "
    "classifiers (Optuna search, MLflow tracking), export the detector for the car.",
    no_args_is_help=True,
)

StoreOpt = Annotated[
    str,
    store_option("Where the sessions are: a directory ('paddock sim capture --out'), file://… or s3://…."),
]
MlflowOpt = Annotated[
    str | None,
    mlflow_option(
        "MLflow tracking URI: http://host:5000, sqlite:///path.db or a file: folder "
        "(default: sqlite mlflow.db in the current directory)."
    ),
]


@perceive_app.command("validate")
def validate(
    store: StoreOpt,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write data_report.{json,md} and a plot here.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """The data report of a dataset (frames per class, balance, blur, exposure, duplicates, missing
    labels, lidar ranges) and its checks; exit 1 when a check fails."""
    from infra.store import open_store
    from trainer.perception.dataset import load_table
    from trainer.perception.validate import data_report, write_data_report

    s = open_store(store)
    report = data_report(s, load_table(s))
    if out is not None:
        write_data_report(report, out)
    if json_out:
        typer.echo(json.dumps(report.to_dict()))
    else:
        typer.echo(f"{report.frames} frames, {report.sessions} sessions")
        for task, counts in report.per_class.items():
            typer.echo(f"  {task}: " + ", ".join(f"{c} {v}" for c, v in counts.items()))
        for c in report.checks:
            typer.echo(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    if not report.ok:
        raise WorkFailed("dataset refused: " + "; ".join(report.reasons))


@perceive_app.command("train")
def train(
    store: StoreOpt,
    out: Annotated[Path, typer.Option("--out", help="The run's directory (report, checkpoints, model).")],
    trials: Annotated[int, typer.Option(min=0, max=200, help="Optuna trials before the final training.")] = 0,
    epochs: Annotated[
        int, typer.Option(min=1, max=1000, help="Epochs of the final training (early stopping).")
    ] = 25,
    epochs_per_trial: Annotated[int, typer.Option(min=1, max=100, help="Epochs per search trial.")] = 6,
    mlflow: MlflowOpt = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log to MLflow.")] = False,
    name: Annotated[str, typer.Option(help="The MLflow run's name.")] = "perception",
    overrides: Annotated[list[str] | None, set_option("net.dropout=0.1")] = None,
    tflite: Annotated[
        bool, typer.Option("--tflite", help="Also export detector.tflite (needs the tflite extra).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Validate, split by session, search (optional), train with early stopping, measure on the
    held-out sessions, export ONNX + int8 (+ TFLite), and track it all in MLflow. The model
    directory holds detector.card.json, the card the car deploys the detector with."""
    from trainer.perception.pipeline import RunConfig, run
    from trainer.perception.tracking import default_tracking_uri
    from trainer.perception.train import TrainConfig
    from trainer.perception.validate import DatasetRefused

    config = RunConfig(
        data=store,
        out=out,
        train=TrainConfig.model_validate({"epochs": epochs} | nested(parse_sets(overrides))),
        trials=trials,
        epochs_per_trial=epochs_per_trial,
        tracking_uri=None if no_track else (mlflow or default_tracking_uri()),
        run_name=name,
        tflite=tflite,
    )
    try:
        summary = run(config, progress=lambda msg: typer.echo(msg, err=True))
    except DatasetRefused as exc:
        raise WorkFailed(str(exc)) from None
    if json_out:
        typer.echo(json.dumps(summary, default=str))
        return
    for task, m in summary["test"].items():
        typer.echo(f"{task}: test accuracy {m['accuracy']:.4f}, macro F1 {m['macro_f1']:.4f}")
    typer.echo(f"report: {summary['report']}")
    if "mlflow" in summary:
        tracked = summary["mlflow"]
        typer.echo(f"mlflow run {tracked.get('run_id')} (model version {tracked.get('model_version')})")


@perceive_app.command("runs")
def runs(
    mlflow: MlflowOpt = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "perception",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the latest tracked runs (and the registry's detector versions)."""
    from trainer.perception.tracking import list_runs, model_versions

    try:
        found = list_runs(mlflow, experiment, limit)
        versions = model_versions(mlflow)
    except Exception as exc:  # an unreachable server or a store that is not MLflow's
        raise UserError(f"cannot read the MLflow store: {exc}") from None
    if json_out:
        typer.echo(json.dumps({"runs": found, "model_versions": versions}))
        return
    for r in found:
        keys = [
            k
            for k in ("test_obstacle_macro_f1", "test_surface_accuracy", "best_val_score", "val_score")
            if k in r["metrics"]
        ]
        shown = ", ".join(f"{k} {r['metrics'][k]:.4f}" for k in keys)
        typer.echo(
            f"{r['run_id'][:12]}  {r['name']:<16} {r['status']:<9} {'(trial) ' if r['parent'] else ''}{shown}"
        )
    for v in versions:
        typer.echo(f"perception-detector v{v['version']}  run {v['run_id'][:12]}  {v['status']}")


def register(app: typer.Typer) -> None:
    app.add_typer(perceive_app, name="perceive")
