"""``paddock demo``: record, train, deploy and race on one machine."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from deploy.errors import as_user_error
from deploy.options import broker_option
from firmware.sim import get_track
from hub.config import MqttConfig

if TYPE_CHECKING:
    from deploy.demo import Demo

# The demo runs the hub and the trainer: it is offered only where they can run. Checked by name,
# because importing them (torch alone takes seconds) would slow every other `paddock` command.
_NEEDS = ("httpx", "fastapi", "uvicorn", "torch", "cv2")
_MISSING = [name for name in _NEEDS if importlib.util.find_spec(name) is None]
if _MISSING:
    raise ImportError(f"No module named {_MISSING[0]!r}")


def demo(
    cars: Annotated[int, typer.Option(help="Simulated cars (1-8), each running the real car daemon.")] = 2,
    track: Annotated[
        str, typer.Option(help="A built-in track (see `paddock sim tracks`) or a DeepRacer .npy.")
    ] = "oval",
    record_laps: Annotated[int, typer.Option(help="Expert laps each car records for training.")] = 2,
    race_laps: Annotated[int, typer.Option(help="Full laps each car drives on the trained model.")] = 2,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 16,
    directory: Annotated[
        Path,
        typer.Option(
            "--out", help="Where the demo's state and report go; a previous demo's state there is replaced."
        ),
    ] = Path("paddock-demo"),
    broker: Annotated[
        str | None, broker_option("Use this broker (mqtt://host:port) instead of the embedded one.")
    ] = None,
    keep: Annotated[
        bool, typer.Option(help="Leave the stack running afterwards and print its addresses.")
    ] = False,
    video: Annotated[bool, typer.Option(help="Write a video of one autonomous lap.")] = True,
    seed: Annotated[int, typer.Option(help="Seed for the simulator and training.")] = 0,
    stage_timeout: Annotated[float, typer.Option(help="Seconds any one stage may take.")] = 900.0,
    race: Annotated[
        bool,
        typer.Option(
            help="Optimise the racing line first (a small genetic algorithm), record the cars driving "
            "it, and report the baseline expert's, the line's and the autopilot's lap times."
        ),
    ] = False,
    race_population: Annotated[int, typer.Option(help="--race: the genetic algorithm's population.")] = 16,
    race_generations: Annotated[int, typer.Option(help="--race: generations to evolve.")] = 10,
) -> None:
    """Run the whole loop on this machine: an embedded broker, the hub, a trainer agent and
    simulated cars. The cars record expert laps, a model is trained over MQTT, signed, deployed
    and hot-swapped while the cars drive, and they race on it. Ctrl-C stops everything cleanly.

    With --race the racing line is optimised first and the cars record with the `race-line` pilot.

    The report (JSON, lap-time plot, track traces, a video of an autonomous lap) is written to
    OUT/report.
    """
    from deploy.demo import Demo, DemoOptions, summary_table

    console = Console(soft_wrap=True)
    get_track(track)  # an unknown track or a bad URL stops here, before anything starts
    if broker is not None:
        MqttConfig(url=broker)
    with as_user_error(ValueError):
        options = DemoOptions(
            cars=cars,
            track=track,
            record_laps=record_laps,
            race_laps=race_laps,
            epochs=epochs,
            directory=directory,
            broker=broker,
            keep=keep,
            seed=seed,
            video=video,
            stage_timeout_s=stage_timeout,
            race=race,
            race_population=race_population,
            race_generations=race_generations,
        )
    runner = Demo(options, console)
    try:
        report = asyncio.run(_run_until_signalled(runner))
    except (KeyboardInterrupt, asyncio.CancelledError):
        if runner.result:  # --keep: the demo had finished, the stack was then stopped on request
            console.print(summary_table(runner.result))
            console.print(f"report: {runner.root / 'report'}\nthe stack was stopped")
            return
        console.print("[yellow]interrupted: everything was stopped[/]")
        raise typer.Exit(130) from None
    console.print(summary_table(report))
    console.print(f"report: {runner.root / 'report'}")


async def _run_until_signalled(runner: Demo) -> dict[str, Any]:
    """Run the demo; SIGTERM (systemd, ``kill``) cancels it like Ctrl-C, so the stack's own
    shutdown runs either way and no process or half-written file is left behind."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await runner.run()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
