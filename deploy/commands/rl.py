"""``paddock rl``: AWS DeepRacer's workflow — new model, train, evaluate, export, compare."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from deploy.errors import UserError
from deploy.options import hub_option, parse_sets, set_option, token_option

rl_app = typer.Typer(
    help="Reinforcement learning the AWS DeepRacer way: a model is model_metadata.json, "
    "hyperparameters.json and reward_function.py; train it in the simulator, evaluate it, send it to a car.",
    no_args_is_help=True,
)
console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)

TrackOption = Annotated[
    str, typer.Option("--track", "-t", help="A built-in track or a DeepRacer .npy file (closed tracks only).")
]
SetOption = Annotated[list[str] | None, set_option("lr=0.001 (a hyperparameter)")]
RACE_TYPE_HELP = "time_trial, object_avoidance (boxes) or head_to_head (bot cars)."
BotCarsOption = Annotated[int, typer.Option(min=1, max=6, help="Bot cars (head_to_head).")]
BotSpeedOption = Annotated[
    float, typer.Option(min=0.05, max=4.0, help="Bot cars' speed, m/s along the centre line (head_to_head).")
]
LaneChangeOption = Annotated[
    bool, typer.Option(help="Bot cars change lanes every 3-5 s, as DeepRacer's (head_to_head).")
]


def _overrides(values: list[str] | None) -> dict[str, Any]:
    try:
        return parse_sets(values)
    except UserError as exc:
        raise _fail(str(exc)) from None


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    return typer.Exit(2)


def _check_race_type(race_type: str) -> None:
    from schemas.messages import RACE_TYPES

    if race_type not in RACE_TYPES:
        raise _fail(f"--race-type must be one of {', '.join(RACE_TYPES)}, got {race_type!r}")


def _check_track(track: str) -> None:
    from firmware.sim.track import TrackError
    from trainer.rl.files import resolve_track

    try:
        resolve_track(track)
    except TrackError as exc:
        raise _fail(str(exc)) from None


@rl_app.command("new")
def new(
    directory: Annotated[Path, typer.Argument(help="The model directory to create.")],
    continuous: Annotated[
        bool, typer.Option(help="A continuous action space trained with SAC (default: discrete, PPO).")
    ] = False,
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Write model_metadata.json, hyperparameters.json and reward_function.py with DeepRacer's defaults."""
    from trainer.rl.files import ModelFileError, new_model

    try:
        written = new_model(directory, "continuous" if continuous else "discrete", force)
    except ModelFileError as exc:
        raise _fail(str(exc)) from None
    for path in written:
        out_console.print(str(path))


@rl_app.command("check")
def check(
    directory: Annotated[Path, typer.Argument(help="The model directory.")],
    overrides: SetOption = None,
) -> None:
    """Validate the three files (each error names the file and the key)."""
    from trainer.rl.files import ModelFileError, load_model_dir

    try:
        files = load_model_dir(directory, _overrides(overrides))
    except ModelFileError as exc:
        raise _fail(str(exc)) from None
    meta = files.metadata
    actions = len(meta.discrete_actions) or "continuous"
    out_console.print(
        f"{directory}: ok ({meta.training_algorithm}, {meta.neural_network}, actions: {actions})"
    )


@rl_app.command("train")
def train_cmd(
    directory: Annotated[Path, typer.Argument(help="The model directory (see `paddock rl new`).")],
    track: TrackOption = "reinvent_base",
    minutes: Annotated[float | None, typer.Option(min=0.05, help="Wall-clock budget in minutes.")] = None,
    clone: Annotated[
        Path | None,
        typer.Option(help="Start from this trained model directory's weights (clone and refine)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default: the model directory). Rerun to resume.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Environment processes.")] = max(
        1, os.cpu_count() or 1
    ),
    race_type: Annotated[str, typer.Option(help=RACE_TYPE_HELP)] = "time_trial",
    obstacles: Annotated[int, typer.Option(min=1, max=12, help="Boxes per episode (object_avoidance).")] = 3,
    bot_cars: BotCarsOption = 3,
    bot_speed: BotSpeedOption = 0.2,
    lane_change: LaneChangeOption = False,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    overrides: SetOption = None,
    live: Annotated[
        bool, typer.Option(help="Live table in the terminal (else one line per iteration).")
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Train until --minutes, term_cond_max_episodes or term_cond_avg_score; then export for the car.

    Each iteration is checkpointed: run the same command again to resume an interrupted run.
    """
    from trainer.rl.files import ModelFileError
    from trainer.rl.train import RewardFunctionFailed, TrainConfig, train

    _check_track(track)
    _check_race_type(race_type)
    try:
        config = TrainConfig(
            model_dir=directory,
            track=track,
            out=out,
            minutes=minutes,
            workers=workers,
            seed=seed,
            clone=clone,
            overrides=_overrides(overrides),
            race_type=race_type,
            obstacles=obstacles,
            bot_cars=bot_cars,
            bot_speed=bot_speed,
            lane_change=lane_change,
            live=live,
        )
        result = train(config, console)
        _export_quietly(result.out)
    except ModelFileError as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except RewardFunctionFailed as exc:
        console.print(f"[red]error:[/red] training stopped: {exc.report()}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    summary = json.loads((result.out / "training.json").read_text())
    if json_out:
        out_console.print_json(data=summary)
    else:
        console.print(
            f"stopped: {result.stop_reason}; {result.iterations} iterations, {result.episodes} episodes, "
            f"{result.steps} steps in {result.elapsed_s / 60:.1f} min; model: {result.out / 'model.zip'}"
        )


def _export_quietly(out: Path) -> None:
    from trainer.rl.export import export

    try:
        path, _ = export(out)
        console.print(f"exported {path}")
    except Exception as exc:  # a model that cannot go to a car still trained
        console.print(f"[yellow]not exported for the car:[/yellow] {exc}")


@rl_app.command("evaluate")
def evaluate_cmd(
    model: Annotated[Path, typer.Argument(help="A trained model directory.")],
    track: TrackOption = "reinvent_base",
    trials: Annotated[int, typer.Option(min=1, max=100, help="Trials (one lap each).")] = 3,
    penalty: Annotated[float, typer.Option(min=0, help="Seconds added per off-track or crash.")] = 5.0,
    out: Annotated[
        Path | None, typer.Option(help="Report directory (evaluation.json, simtrace.csv).")
    ] = None,
    video: Annotated[bool, typer.Option(help="Also write evaluation.mp4.")] = False,
    max_time: Annotated[
        float, typer.Option(min=1, help="A trial ends after this many simulated seconds without a lap.")
    ] = 180.0,
    race_type: Annotated[str, typer.Option(help=RACE_TYPE_HELP)] = "time_trial",
    obstacles: Annotated[int, typer.Option(min=1, max=12, help="Boxes per trial (object_avoidance).")] = 3,
    bot_cars: BotCarsOption = 3,
    bot_speed: BotSpeedOption = 0.2,
    lane_change: LaneChangeOption = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Evaluate as DeepRacer: trials, lap times with the off-track penalty, completion, consistency."""
    from trainer.rl.evaluate import EvalConfig, evaluate
    from trainer.rl.files import ModelFileError

    _check_track(track)
    _check_race_type(race_type)
    try:
        report = evaluate(
            EvalConfig(
                model_dir=model,
                track=track,
                trials=trials,
                penalty_s=penalty,
                max_time_s=max_time,
                out=out,
                video=video,
                race_type=race_type,
                obstacles=obstacles,
                bot_cars=bot_cars,
                bot_speed=bot_speed,
                lane_change=lane_change,
            )
        )
    except (ModelFileError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if json_out:
        out_console.print_json(data=report.to_dict())
        return
    out_console.print(evaluation_table(report.to_dict()))


def evaluation_table(report: dict[str, Any]) -> Table:
    table = Table(
        "trial",
        "time (s)",
        "completion %",
        "off track",
        "crashes",
        "status",
        title=f"{report['model']} on {report['track']}",
    )
    for t in report["trials"]:
        time_s = "-" if t["lap_time_s"] is None else f"{t['lap_time_s']:.3f}"
        table.add_row(
            str(t["trial"]),
            time_s,
            f"{t['completion_pct']:.1f}",
            str(t["off_track"]),
            str(t["crashes"]),
            t["status"],
        )
    s = report["summary"]
    consistency = "-" if s["consistency_s"] is None else f"±{s['consistency_s']:.3f}"
    table.caption = (
        f"laps {s['laps_completed']}/{s['trials']}, clean {s['clean_laps']}, consistency {consistency} s"
    )
    return table


@rl_app.command("export")
def export_cmd(
    model: Annotated[Path, typer.Argument(help="A trained model directory.")],
    out: Annotated[Path | None, typer.Option(help="Where to write model.onnx and model_card.json.")] = None,
) -> None:
    """Export the policy to ONNX with a model card declaring its action space (for `paddock` deploys)."""
    from trainer.rl.export import export
    from trainer.rl.files import ModelFileError

    try:
        path, _ = export(model, out)
    except ModelFileError as exc:
        raise _fail(str(exc)) from None
    out_console.print(str(path))


@rl_app.command("register")
def register_cmd(
    model: Annotated[Path, typer.Argument(help="A trained model directory.")],
    hub: Annotated[str, hub_option("The hub's REST API, e.g. http://hub.local:8080.")],
    name: Annotated[str, typer.Option(help="Model name in the hub's catalog.")] = "deepracer",
    version: Annotated[str | None, typer.Option(help="Model version (default: the hub's next).")] = None,
    token: Annotated[str | None, token_option("API token for the hub.")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the hub's entry as JSON on stdout.")
    ] = False,
) -> None:
    """Register the exported model with the hub (card with its action space; the clone's parent in the
    lineage), ready to deploy to cars like any model."""
    from trainer.hub_client import HubError
    from trainer.rl.files import ModelFileError
    from trainer.rl.register import register

    try:
        entry = register(model, hub, token, name, version)
    except (ModelFileError, HubError) as exc:
        raise _fail(str(exc)) from None
    if json_out:
        out_console.print_json(data=entry)
        return
    parent = (entry.get("lineage") or {}).get("parent")
    out_console.print(
        f"registered {entry.get('name')}:{entry.get('version')}" + (f" (parent {parent})" if parent else "")
    )


@rl_app.command("compare")
def compare_cmd(
    reports: Annotated[
        list[Path], typer.Argument(help="evaluation.json files (or model directories' evaluation dirs).")
    ],
    plot: Annotated[Path | None, typer.Option(help="Write a comparison plot (PNG).")] = None,
) -> None:
    """Versions side by side: completion, lap times, off-track counts, consistency."""
    from trainer.rl.clone import compare_versions, read_evaluation
    from trainer.rl.files import ModelFileError

    try:
        loaded = {}
        for path in reports:
            file = path / "evaluation.json" if path.is_dir() else path
            loaded[str(path)] = read_evaluation(file)
    except ModelFileError as exc:
        raise _fail(str(exc)) from None
    rows = compare_versions(loaded, plot)
    table = Table("version", "laps", "completion %", "mean lap s", "best lap s", "off track", "consistency s")
    for r in rows:
        table.add_row(
            r["version"],
            f"{r['laps_completed']}/{r['trials']}",
            f"{r['completion_pct']:.1f}",
            _num(r["mean_lap_time_s"]),
            _num(r["best_lap_time_s"]),
            str(r["off_track"]),
            _num(r["consistency_s"]),
        )
    out_console.print(table)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def register(app: typer.Typer) -> None:
    app.add_typer(rl_app, name="rl")
