"""``paddock race``: optimise a racing line with a genetic algorithm, evaluated on a Dask cluster."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deploy.errors import UserError, classify
from deploy.options import JsonOpt, parse_sets, set_option
from firmware.sim import builtin_track_names, get_track
from firmware.sim.track import Track
from trainer.race.evolve import EvolutionConfig, GenerationStats
from trainer.race.line import LineConfig
from trainer.race.result import CHECKPOINT, FitnessKind, RaceResult, RunSettings, optimize

race_app = typer.Typer(
    help="Race optimisation: a racing line evolved by a genetic algorithm (DEAP) on a Dask cluster.",
    no_args_is_help=True,
)
console = Console(stderr=True, soft_wrap=True)


@race_app.callback()
def _group() -> None:
    """Race optimisation: a racing line evolved by a genetic algorithm (DEAP) on a Dask cluster."""


def _track(name: str) -> Track:
    return get_track(name)  # a TrackError is a user error at the entry point


def _overrides(values: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set lateral_accel=3.5`` → (line settings, evolution settings)."""
    line_fields = {f.name for f in dataclasses.fields(LineConfig)} - {"car"}
    evo_fields = {f.name for f in dataclasses.fields(EvolutionConfig)}
    line: dict[str, Any] = {}
    evo: dict[str, Any] = {}
    for key, value in parse_sets(values).items():
        if key in line_fields:
            line[key] = value
        elif key in evo_fields - {"population", "generations", "seed", "budget_s"}:
            evo[key] = value
        else:
            known = ", ".join(sorted(line_fields | evo_fields))
            raise UserError(f"--set {key}: unknown setting; known: {known}")
    return line, evo


def _progress_printer(progress: Progress, task: Any) -> Any:
    def on_generation(stats: GenerationStats) -> None:
        progress.update(task, completed=stats.generation, info=f"best {stats.best:.3f} s")
        progress.console.print(
            f"  generation {stats.generation:3d}: best {stats.best:7.3f} s  mean {stats.mean:8.3f}  "
            f"std {stats.std:7.3f}  {stats.evaluations:4d} evaluations  {stats.evals_per_s:8.1f}/s"
        )

    return on_generation


@race_app.command("optimize")
def optimize_command(
    track: Annotated[
        str,
        typer.Option(
            "--track",
            "-t",
            help=f"A built-in track ({', '.join(builtin_track_names())}) or a DeepRacer .npy file.",
        ),
    ] = "oval",
    population: Annotated[int, typer.Option(min=4, max=10000, help="Individuals per generation.")] = 32,
    generations: Annotated[int, typer.Option(min=0, max=100000, help="Generations to evolve.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same line.")] = 0,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="A Dask scheduler (tcp://HOST:8786) whose workers evaluate; default: a local cluster."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Local cluster processes (default: one per CPU; 0: evaluate in this process). "
            "With --scheduler: wait for this many workers.",
        ),
    ] = None,
    pool: Annotated[
        bool, typer.Option(help="Evaluate on a local process pool instead of Dask (for comparison).")
    ] = False,
    fitness: Annotated[
        str,
        typer.Option(
            help="'fast' (vectorised lap-time model) or 'replay' (drive each line in the simulator)."
        ),
    ] = "fast",
    budget: Annotated[
        float | None, typer.Option(min=1, help="Stop after the generation that passes this many seconds.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory (line, result, plots, checkpoint) [default: race/TRACK]."),
    ] = None,
    restart: Annotated[bool, typer.Option(help="Ignore a checkpoint in --out and start again.")] = False,
    set_: Annotated[list[str] | None, set_option("lateral_accel=3.5")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Evolve a racing line round TRACK and drive it in the simulator.

    Each generation is checkpointed in --out: run the same command again after a crash and it
    resumes where it stopped. Writes line.csv (the line and its speed profile), result.json,
    line.png (the line on the track) and history.png (fitness per generation).
    """
    t = _track(track)
    if fitness not in ("fast", "replay"):
        raise UserError(f"--fitness must be 'fast' or 'replay', not {fitness!r}")
    line_set, evo_set = _overrides(set_ or [])
    try:
        line = LineConfig(**line_set)
        evolution = EvolutionConfig(
            population=population, generations=generations, seed=seed, budget_s=budget, **evo_set
        )
    except (TypeError, ValueError) as exc:
        raise UserError(str(exc)) from None
    directory = out or Path("race") / t.name
    if restart:
        (directory / CHECKPOINT).unlink(missing_ok=True)
    kind: FitnessKind = "replay" if fitness == "replay" else "fast"
    settings = RunSettings(scheduler=scheduler, workers=workers, pool=pool, fitness=kind)
    result = _run(t, line, evolution, settings, directory)
    if json_out:
        typer.echo(json.dumps(result.summary()))
    else:
        _print_table(result)
    if not result.verified.finished:
        raise typer.Exit(1)


def _run(
    t: Track, line: LineConfig, evolution: EvolutionConfig, settings: RunSettings, directory: Path
) -> RaceResult:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"{t.name}", total=evolution.generations, info="")
        try:
            return optimize(t, line, evolution, settings, directory, _progress_printer(progress, task))
        except ValueError as exc:  # a checkpoint of another run; a setting the line cannot use
            raise UserError(str(exc)) from None


def _print_table(result: RaceResult) -> None:
    table = Table("", "best lap (s)", "laps (s)", "wheels off (steps)")
    for name, run in (("baseline expert", result.baseline), ("optimised line", result.verified)):
        laps = ", ".join(f"{x:.3f}" for x in run.lap_times)
        table.add_row(name, f"{run.best_lap:.3f}" if run.best_lap else "-", laps, str(run.wheels_off_steps))
    Console().print(table)
    e = result.evolution
    resumed = f", resumed from generation {e.resumed_from}" if e.resumed_from is not None else ""
    console.print(
        f"estimated lap {result.estimate.lap_time:.3f} s; {e.generations} generations, {e.evaluations} "
        f"evaluations in {e.elapsed_s:.1f} s on {result.workers} worker(s){resumed}"
    )
    for key in ("line", "map", "history_plot", "result"):
        console.print(f"{key}: {result.files[key]}")


def register(app: typer.Typer) -> None:
    app.add_typer(race_app, name="race")


def _main() -> int:
    """``python -m deploy.commands.race optimize ...``: this command without the others (which import
    torch), its errors reported as ``paddock`` reports them."""
    try:
        result = race_app(standalone_mode=False)
    except Exception as exc:
        verdict = classify(exc, sys.argv[1:])
        if verdict is None:
            raise
        code, message = verdict
        typer.echo(f"{'error' if code == 2 else 'failed'}: {message}", err=True)
        return code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(_main())
