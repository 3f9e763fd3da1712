"""``paddock hub pipeline``: the MLOps pipeline (collect → validate → train → evaluate → gate →
deploy) run against the hub from a terminal, all steps or some; the Airflow DAG in
``deploy/airflow/`` runs the same steps one task each (:mod:`deploy.pipeline`)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from deploy.commands.hub import hub_app
from deploy.commands.hubctl import DEFAULT_HUB, HubClient, HubOpt, TokenFileOpt, TokenOpt
from deploy.errors import UserError
from deploy.options import JsonOpt, merged, nested, parse_sets, set_option


def _config(flags: dict[str, Any], sets: list[str] | None) -> Any:
    from pydantic import ValidationError

    from deploy.pipeline import PipelineConfig

    data = merged({k: v for k, v in flags.items() if v is not None}, nested(parse_sets(sets)))
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "pipeline"
        raise UserError(f"{where}: {first['msg']}") from None


@hub_app.command("pipeline", short_help="Collect, validate, train, evaluate, gate and deploy a model.")
def pipeline(
    run: Annotated[
        str | None,
        typer.Option(help="The run's id; run again with the same id to resume it (default: a new one)."),
    ] = None,
    step: Annotated[
        list[str] | None,
        typer.Option(help="Run only this step (repeat; default: all, in order)."),
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Train on this dataset; no collect step.")] = None,
    from_car: Annotated[
        list[str] | None, typer.Option(help="Collect only this car's sessions (repeat).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Training epochs (default 10).")] = None,
    track: Annotated[
        str | None, typer.Option(help="The closed-loop evaluation's track (default oval).")
    ] = None,
    laps: Annotated[int | None, typer.Option(min=1, help="Laps of the evaluation (default 2).")] = None,
    car: Annotated[str | None, typer.Option(help="Deploy to this car.")] = None,
    group: Annotated[str | None, typer.Option(help="Deploy to this group.")] = None,
    canary: Annotated[bool, typer.Option(help="Deploy to the group through a canary.")] = False,
    force: Annotated[bool, typer.Option(help="Deploy even if the gate refuses (recorded).")] = False,
    set_: Annotated[list[str] | None, set_option("min_frames=500")] = None,
    hub: HubOpt = DEFAULT_HUB,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the MLOps pipeline through the hub's REST API: collect the newest sealed sessions and the
    feedback frames into the run's dataset, validate it, train (a train job for the trainer agents),
    evaluate in the simulator (an evaluate job), run the car's smoke test and ask the hub's
    evaluation gate, then deploy to --car or --group (or start a --canary).

    The hub keeps the run's state, so a step that fails can be run again with the same --run and
    --step: it follows the job an earlier try started instead of queueing another. Every setting of
    the run (docs/pipeline.md) can be given with --set, e.g. --set train_options.batch_size=32.
    Exit code 1 when a step fails, the gate's refusal included."""
    from deploy.pipeline import STEPS, Pipeline

    flags = {
        "run": run or time.strftime("run-%Y%m%d-%H%M%S"),
        "dataset": dataset,
        "cars": from_car,
        "epochs": epochs,
        "track": track,
        "laps": laps,
        "car": car,
        "group": group,
        "canary": canary or None,
        "force": force or None,
    }
    cfg = _config(flags, set_)
    steps = step or [s for s in STEPS if not (s == "collect" and dataset)]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise UserError(f"unknown step {unknown[0]!r}; the steps are {', '.join(STEPS)}")

    def report(line: str) -> None:
        typer.echo(line, err=as_json)  # with --json, stdout holds only the JSON

    runner = Pipeline(HubClient(hub, token, token_file), cfg, report)
    report(f"run {cfg.run}: {', '.join(steps)}")
    done: dict[str, Any] = {}
    for name in steps:
        done[name] = runner.run(name)
    if as_json:
        typer.echo(json.dumps({"run": cfg.run, "steps": done}, indent=2, default=str))


JOINS = "hub"
"""The group this command belongs to (``paddock hub --help`` lists it)."""


def register(app: typer.Typer) -> None:
    """Nothing to add at the top: the command joined ``paddock hub`` when this module was imported."""
