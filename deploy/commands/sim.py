"""``paddock sim``: drive simulated laps, render frames and draw track maps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deploy.errors import UserError
from deploy.options import JsonOpt
from firmware.sim import (
    ExpertConfig,
    ExpertDriver,
    Obstacle,
    Randomization,
    TrackError,
    World,
    WorldConfig,
    builtin_track_names,
    drive,
    get_track,
    load_reward_function,
    place_obstacles,
)
from firmware.sim.media import VIDEO_SUFFIXES, VideoWriter, plot_track_map
from firmware.sim.reward import RewardFunction
from firmware.sim.run import RunResult
from firmware.sim.simtrace import SimTraceWriter
from firmware.sim.track import Track
from firmware.sim.world import WorldStatus

sim_app = typer.Typer(
    help="The simulator: DeepRacer-compatible tracks, first-person camera, expert driver.",
    no_args_is_help=True,
)
console = Console(stderr=True, soft_wrap=True)  # never break an error message (or a path) mid-word

TrackOption = Annotated[
    str,
    typer.Option(
        "--track",
        "-t",
        help=f"A built-in track ({', '.join(builtin_track_names())}; add -reversed to drive it the "
        "other way) or a DeepRacer .npy file.",
    ),
]


def _track(name: str) -> Track:
    return get_track(name)  # a TrackError is reported by the entry point (exit code 2)


@sim_app.command("tracks")
def tracks(
    directory: Annotated[
        Path | None,
        typer.Argument(
            exists=True, file_okay=False, help="Also list the .npy track files in this directory."
        ),
    ] = None,
) -> None:
    """List the built-in tracks (and the track files in DIRECTORY)."""
    table = Table("track", "length (m)", "width (m)", "waypoints", "source")
    names: list[str] = list(builtin_track_names())
    if directory is not None:
        names += [str(p) for p in sorted(directory.glob("*.npy"))]
    for name in names:
        try:
            t = get_track(name)
        except TrackError as exc:
            table.add_row(Path(name).stem, "-", "-", "-", f"[red]{exc}[/red]")
            continue
        table.add_row(t.name, f"{t.length:.1f}", f"{t.width:.2f}", str(len(t.waypoints)), t.source)
    Console().print(table)


@sim_app.command("run")
def run(
    track: TrackOption = "oval",
    driver: Annotated[
        str, typer.Option(help="Who drives: 'expert' (pure pursuit on ground truth).")
    ] = "expert",
    laps: Annotated[int, typer.Option(min=1, max=100, help="Laps to drive.")] = 2,
    video: Annotated[
        Path | None, typer.Option(help="Write the first-person view to this .mp4 or .gif file.")
    ] = None,
    map_png: Annotated[
        Path | None, typer.Option("--map", help="Write a track map PNG with the driven line.")
    ] = None,
    simtrace: Annotated[
        Path | None, typer.Option(help="Write a DeepRacer simtrace CSV (19 columns).")
    ] = None,
    reward: Annotated[
        Path | None,
        typer.Option(help="A DeepRacer reward_function file, scored each step (into the simtrace)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for domain randomisation and noise.")] = 0,
    randomize: Annotated[
        bool, typer.Option(help="Domain randomisation (light, colours, blur, noise).")
    ] = False,
    max_speed: Annotated[float, typer.Option(min=0.2, max=4.0, help="The expert's top speed (m/s).")] = 2.0,
    obstacles: Annotated[
        str | None, typer.Option(help="Boxes at these progress percentages, e.g. '25,60' (lanes alternate).")
    ] = None,
    fps: Annotated[
        float, typer.Option(min=5, max=60, help="Simulation steps (and video frames) per second.")
    ] = 15.0,
    json_out: JsonOpt = False,
) -> None:
    """Drive LAPS laps and report lap times; optionally write a video, a track map and a simtrace."""
    t = _track(track)
    if driver != "expert":
        raise UserError(f"unknown driver {driver!r}; available: expert")
    if video is not None and video.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"{video}: the video must end in .mp4 or .gif")
    placed: tuple[Obstacle, ...] = ()
    if obstacles:
        try:
            placed = place_obstacles(t, [float(v) for v in obstacles.split(",")])
        except ValueError as exc:
            raise UserError(f"--obstacles: {exc}") from None
    reward_fn = load_reward_function(reward) if reward is not None else None
    config = WorldConfig(
        dt=1.0 / fps,
        substeps=max(1, round(60 / fps)),
        randomization=Randomization(enabled=randomize),
        obstacles=placed,
    )
    world = World(t, config, seed=seed)
    expert = ExpertDriver(t, config.car, ExpertConfig(max_speed=max_speed))
    writer = VideoWriter(video, t, fps) if video is not None else None
    trace_writer = SimTraceWriter(simtrace) if simtrace is not None else None
    try:
        result = _drive_with_progress(world, expert, laps, reward_fn, trace_writer, writer)
    finally:
        if writer is not None:
            writer.close()
        if trace_writer is not None:
            trace_writer.close()
    if map_png is not None:
        times = ", ".join(f"{x:.2f} s" for x in result.lap_times)
        plot_track_map(
            t, map_png, result.trace, result.speeds, title=f"{t.name} — {driver}: {times}", obstacles=placed
        )
    summary = {
        "track": t.name,
        "driver": driver,
        "laps": result.laps,
        "lap_times": [round(x, 3) for x in result.lap_times],
        "best_lap": round(result.best_lap, 3) if result.best_lap else None,
        "off_track": result.off_track,
        "crashes": result.crashes,
        "finished": result.finished,
        "video": str(video) if video else None,
        "map": str(map_png) if map_png else None,
        "simtrace": str(simtrace) if simtrace else None,
    }
    if reward_fn is not None:
        summary["total_reward"] = round(result.total_reward, 4)
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        table = Table("lap", "time (s)")
        for i, lap_time in enumerate(result.lap_times, 1):
            table.add_row(str(i), f"{lap_time:.3f}")
        Console().print(table)
        for key in ("video", "map", "simtrace"):
            if summary[key]:
                console.print(f"{key}: {summary[key]}")
    if not result.finished:
        raise typer.Exit(1)


def _drive_with_progress(
    world: World,
    expert: ExpertDriver,
    laps: int,
    reward_fn: RewardFunction | None,
    trace_writer: SimTraceWriter | None,
    writer: VideoWriter | None,
) -> RunResult:
    """Drive ``laps`` laps with a live progress bar that prints each lap, off-track and crash."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(world.track.name, total=100.0 * laps, info="")

        def on_step(status: WorldStatus) -> None:
            progress.update(
                task,
                completed=min(status.total_progress, 100.0 * laps),
                info=f"lap {min(status.lap + 1, laps)}/{laps}  {status.speed:4.2f} m/s",
            )
            for event in status.events:
                if event.kind == "lap":
                    progress.console.print(f"  lap {event.lap}: {event.lap_time:.3f} s")
                elif event.kind in ("off_track", "crash"):
                    progress.console.print(f"  [yellow]{event.kind}[/yellow] at {event.progress:.1f} %")

        return drive(
            world,
            expert,
            laps,
            reward_function=reward_fn,
            simtrace=trace_writer,
            video=writer,
            on_step=on_step,
        )


@sim_app.command("map")
def map_(
    track: TrackOption = "oval",
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG to write.")] = Path("track.png"),
) -> None:
    """Draw a track map PNG (borders, centre line, start line and direction, waypoint numbers)."""
    t = _track(track)
    typer.echo(plot_track_map(t, out))


@sim_app.command("frame")
def frame(
    track: TrackOption = "oval",
    progress: Annotated[float, typer.Option(min=0, max=100, help="Where on the track (% of a lap).")] = 0.0,
    lateral: Annotated[float, typer.Option(help="Metres left of the centre line.")] = 0.0,
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG to write.")] = Path("frame.png"),
    scale: Annotated[int, typer.Option(min=1, max=8, help="Upscale factor for viewing.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed for domain randomisation.")] = 0,
    randomize: Annotated[bool, typer.Option(help="Domain randomisation.")] = False,
) -> None:
    """Render one camera frame (160×120 RGB) to a PNG."""
    t = _track(track)
    world = World(t, WorldConfig(randomization=Randomization(enabled=randomize)), seed=seed)
    world.reset(seed, start_progress=progress, lateral=lateral)
    image = world.render()
    if scale > 1:
        image = np.asarray(
            cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST), np.uint8
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    typer.echo(out)


@sim_app.command("capture")
def capture_cmd(
    track: TrackOption = "oval",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Dataset root (an object-store directory).")
    ] = Path("capture"),
    sessions: Annotated[
        int, typer.Option(min=1, max=10_000, help="Scenes to capture, one session each.")
    ] = 8,
    frames: Annotated[int, typer.Option(min=1, max=1_000_000, help="Frames per session.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the first session (then seed + 1, ...).")] = 0,
    on_track: Annotated[int, typer.Option(min=0, max=50, help="Obstacles on the road per scene.")] = 4,
    beside: Annotated[int, typer.Option(min=0, max=50, help="Obstacles beside the road per scene.")] = 4,
    car: Annotated[str, typer.Option(help="Car id the sessions are filed under.")] = "sim-capture",
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifests' summary as JSON.")] = False,
) -> None:
    """Capture labelled scenes: camera frames, lidar scans (CSV) and ground-truth labels.

    Each session is a random scene (obstacles of every kind on and beside the road, a road
    surface, light and colours) driven by the avoiding expert. Written in the hub's dataset layout
    under OUT/datasets/CAR/SESSION/: WebDataset shards (frames with their labels), manifest.json,
    lidar.csv (one row per scan: seq, time, pose, one column per beam) and scene.json.
    """
    from firmware.sim.capture import CaptureConfig, capture
    from schemas.ids import check_car_id

    t = _track(track)
    try:
        check_car_id(car)
        config = CaptureConfig(sessions=sessions, frames=frames, on_track=on_track, beside=beside, car=car)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    source = track if Path(track).suffix == ".npy" else t.name
    with Progress(
        TextColumn("[bold]capture"), BarColumn(), TextColumn("{task.completed}/{task.total} frames"),
        TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        task = progress.add_task("capture", total=sessions * frames)
        done = [0]

        def on_frame(seq: int) -> None:
            done[0] += 1
            progress.update(task, completed=done[0])

        manifests = capture(out, source, config, seed=seed, on_frame=on_frame)
    summary = {
        "out": str(out),
        "car": car,
        "sessions": [
            {"session": m.session, "frames": m.frame_count, "shards": len(m.shards)} for m in manifests
        ],
        "frames": sum(m.frame_count for m in manifests),
    }
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        console.print(
            f"{summary['frames']} frames in {len(manifests)} sessions under {out / 'datasets' / car}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")
