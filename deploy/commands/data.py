"""``paddock data``: recorded driving in and out of other tools' formats (DonkeyCar tubs,
LeRobot datasets), into a store and/or onto a hub's catalog (``--hub``)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from deploy.options import hub_option, token_option
from infra.store import ObjectStore, StoreError, open_store
from schemas.ids import check_car_id
from trainer.interop.sessions import session_manifest, write_session_tar
from trainer.interop.tub import (
    ImportReport,
    TubError,
    export_tub,
    import_tub,
    read_tub_manifest,
    session_samples,
)

data_app = typer.Typer(
    help="Recorded driving in and out of other tools' formats: DonkeyCar tubs (v2), LeRobot datasets "
    "(v3.0). Imports go into a store (--store) and/or a hub's catalog (--hub).",
    no_args_is_help=True,
)
console = Console(stderr=True, soft_wrap=True)

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", envvar="PADDOCK_STORE", help="Object store: a directory, file://… or s3://bucket/prefix."
    ),
]


HubOpt = Annotated[
    str | None, hub_option("Also upload the imported sessions to this hub: listed and trainable there.")
]
TokenOpt = Annotated[str | None, token_option("The hub's API token (operate scope) for --hub.")]


def _fail(message: str) -> typer.Exit:
    console.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(2)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console)


@data_app.command("import-tub")
def import_tub_cmd(
    tubs: Annotated[list[Path], typer.Argument(help="DonkeyCar tub v2 directories (with manifest.json).")],
    store: StoreOpt = None,
    car: Annotated[str, typer.Option("--car", help="Car id the sessions are filed under.")] = "donkeycar",
    as_json: Annotated[bool, typer.Option("--json", help="Print the import report as JSON.")] = False,
    hub: HubOpt = None,
    token: TokenOpt = None,
) -> None:
    """Import DonkeyCar tubs as sealed sessions (one per DonkeyCar session id in the tub).

    Deleted records (the tub's deleted_indexes) are left out; JPEGs are copied as they are. The
    trainers read the sessions straight away: `paddock train run --store STORE ...`; with --hub
    they are uploaded too and appear in the hub's sessions, ready for a dataset and a training job.
    """
    with _target(store, hub) as target:
        reports = _import_tubs(tubs, target, car)
        uploaded = _upload(hub, token, target, car, reports)
    _print_reports(reports, car, as_json, uploaded)


def _import_tubs(tubs: list[Path], target: ObjectStore, car: str) -> dict[str, ImportReport]:
    try:
        check_car_id(car)
        reports: dict[str, ImportReport] = {}
        for tub in tubs:
            total = read_tub_manifest(tub)["catalog"].get("current_index", 0)
            with _progress() as bar:
                task = bar.add_task(f"{tub.name}", total=total)

                def advance(index: int, task: TaskID = task, bar: Progress = bar) -> None:
                    bar.update(task, completed=index + 1)

                reports[str(tub)] = import_tub(tub, target, car, on_frame=advance)
    except (TubError, StoreError, ValueError) as exc:
        raise _fail(str(exc)) from None
    return reports


@contextmanager
def _target(store: str | None, hub: str | None) -> Iterator[ObjectStore]:
    """The store imports go into: --store, else (with --hub only) a temporary one for the upload."""
    if store:
        try:
            yield open_store(store)
        except StoreError as exc:
            raise _fail(str(exc)) from None
        return
    if not hub:
        raise _fail("--store (or PADDOCK_STORE) or --hub (or PADDOCK_HUB) is required")
    with tempfile.TemporaryDirectory(prefix="paddock-import-") as tmp:
        yield open_store(tmp)


def _upload(
    hub: str | None, token: str | None, store: ObjectStore, car: str, reports: dict[str, ImportReport]
) -> list[str]:
    """POST each imported session to the hub (``POST /sessions``, the export's tar layout)."""
    if not hub:
        return []
    from deploy.commands.hubctl import HubClient

    client = HubClient(hub, token, None)
    done: list[str] = []
    for session in (s for r in reports.values() for s in r.sessions):
        with tempfile.TemporaryFile() as fh:
            write_session_tar(store, car, session, fh)
            fh.seek(0)
            client.call("POST", "/sessions", files={"tar": (f"{car}-{session}.tar", fh, "application/x-tar")})
        done.append(f"{car}/{session}")
    return done


def _print_reports(reports: dict[str, ImportReport], car: str, as_json: bool, uploaded: list[str]) -> None:
    if as_json:
        out: dict[str, Any] = {name: vars(r) for name, r in reports.items()}
        typer.echo(json.dumps(out | ({"uploaded": uploaded} if uploaded else {}), indent=2))
        return
    for name, r in reports.items():
        for session, frames in r.sessions.items():
            typer.echo(f"{car}/{session}: {frames} frames")
        typer.echo(f"{name}: {r.deleted} deleted records left out, {r.skipped} skipped, {r.clipped} clipped")
        for reason in r.reasons[:10]:
            typer.echo(f"  skipped: {reason}")
    for session in uploaded:
        typer.echo(f"uploaded {session} to the hub")


@data_app.command("export-tub")
def export_tub_cmd(
    out: Annotated[Path, typer.Argument(help="Directory to write the tub to (new or empty).")],
    session: Annotated[str, typer.Option("--session", help="The session to export, as CAR/SESSION.")],
    store: StoreOpt = None,
) -> None:
    """Write a stored session as a DonkeyCar tub v2 (cam/image_array, user/angle, user/throttle,
    user/mode), readable by DonkeyCar's Tub and `donkey train`."""
    if not store:
        raise _fail("--store (or PADDOCK_STORE) is required")
    car, name = _session_ref(session)
    if out.exists() and any(out.iterdir()):
        raise _fail(f"{out} is not empty")
    try:
        source = open_store(store)
        with _progress() as bar:
            task = bar.add_task(f"{car}/{name}", total=None)
            count = export_tub(
                session_samples(source, car, name), out, on_frame=lambda n: bar.update(task, completed=n)
            )
    except (TubError, StoreError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{out}: {count} records ({os.path.getsize(out / 'manifest.json')} byte manifest)")


@data_app.command("export-lerobot")
def export_lerobot_cmd(
    out: Annotated[Path, typer.Argument(help="Directory to write the dataset to (new or empty).")],
    sessions: Annotated[
        list[str], typer.Option("--session", help="A session to export, as CAR/SESSION (repeatable).")
    ],
    store: StoreOpt = None,
    fps: Annotated[int | None, typer.Option(help="Frame rate (default: the first session's).", min=1)] = None,
    task: Annotated[str, typer.Option(help="The episodes' task text.")] = "drive the track",
    vcodec: Annotated[str, typer.Option(help="Video codec: av1 (SVT-AV1, LeRobot's) or h264.")] = "av1",
    robot_type: Annotated[str, typer.Option(help="info.json's robot_type.")] = "paddock",
    as_json: Annotated[bool, typer.Option("--json", help="Print the export report as JSON.")] = False,
) -> None:
    """Write stored sessions as a LeRobot dataset (v3.0): one episode per session, the camera as
    observation.images.front (mp4), action = [steering, throttle], observation.state = [speed].
    LeRobot reads it with LeRobotDataset("NAME", root=OUT)."""
    from trainer.interop.lerobot import LeRobotError, export_lerobot

    if not store:
        raise _fail("--store (or PADDOCK_STORE) is required")
    refs = [_session_ref(s) for s in sessions]
    if out.exists() and any(out.iterdir()):
        raise _fail(f"{out} is not empty")
    try:
        source = open_store(store)
        total = sum(session_manifest(source, car, name).frame_count for car, name in refs)
        with _progress() as bar:
            task_id = bar.add_task("frames", total=total)
            report = export_lerobot(
                (list(session_samples(source, car, name)) for car, name in refs),
                out,
                fps=fps,
                task=task,
                robot_type=robot_type,
                vcodec=vcodec,
                on_frame=lambda n: bar.advance(task_id, n),
            )
    except (LeRobotError, StoreError, ValueError, OSError) as exc:
        shutil.rmtree(out, ignore_errors=True)  # it was empty or new: no half-written dataset stays
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(vars(report), indent=2))
        return
    for session, frames in report.episodes.items():
        typer.echo(f"episode {session}: {frames} frames")
    typer.echo(f"{out}: {report.frames} frames at {report.fps} fps ({report.vcodec})")


@data_app.command("import-lerobot")
def import_lerobot_cmd(
    root: Annotated[Path, typer.Argument(help="A LeRobot v3.0 dataset directory (with meta/info.json).")],
    store: StoreOpt = None,
    car: Annotated[str, typer.Option("--car", help="Car id the sessions are filed under.")] = "lerobot",
    camera: Annotated[
        str | None, typer.Option(help="The camera feature to take (default: the first video or image).")
    ] = None,
    steering: Annotated[
        str | None,
        typer.Option(help="action's steering: a name or an index (default: by name, else 0)."),
    ] = None,
    throttle: Annotated[
        str | None,
        typer.Option(help="action's throttle: a name or an index (default: by name, else 1)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the import report as JSON.")] = False,
    hub: HubOpt = None,
    token: TokenOpt = None,
) -> None:
    """Import a LeRobot dataset (v3.0) as sealed sessions, one per episode: the camera's frames as
    JPEGs, action's steering and throttle (clipped to [-1, 1]) as the frames' actions."""
    from trainer.interop.lerobot import LeRobotError, import_lerobot, open_source

    with _target(store, hub) as target:
        try:
            check_car_id(car)
            source = open_source(root, camera, steering, throttle)
            with _progress() as bar:
                task_id = bar.add_task(root.name, total=int(source.info.get("total_frames") or 0) or None)
                report = import_lerobot(source, target, car, on_frame=lambda n: bar.advance(task_id, n))
        except (LeRobotError, StoreError, ValueError, OSError) as exc:
            raise _fail(str(exc)) from None
        reports = {str(root): report}
        uploaded = _upload(hub, token, target, car, reports)
    _print_reports(reports, car, as_json, uploaded)


def _session_ref(text: str) -> tuple[str, str]:
    car, sep, name = text.partition("/")
    if not sep or not name:
        raise _fail(f"--session expects CAR/SESSION, got {text!r}")
    return car, name


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
