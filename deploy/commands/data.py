"""``paddock data``: recorded driving in and out of other tools' formats (DonkeyCar tubs)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from infra.store import StoreError, open_store
from schemas.ids import check_car_id
from trainer.interop.tub import (
    ImportReport,
    TubError,
    export_tub,
    import_tub,
    read_tub_manifest,
    session_samples,
)

data_app = typer.Typer(
    help="Recorded driving in and out of other tools' formats: DonkeyCar tubs (v2).",
    no_args_is_help=True,
)
console = Console(stderr=True, soft_wrap=True)

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", envvar="PADDOCK_STORE", help="Object store: a directory, file://… or s3://bucket/prefix."
    ),
]


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
) -> None:
    """Import DonkeyCar tubs as sealed sessions (one per DonkeyCar session id in the tub).

    Deleted records (the tub's deleted_indexes) are left out; JPEGs are copied as they are. The
    trainers read the sessions straight away: `paddock train run --store STORE ...`.
    """
    if not store:
        raise _fail("--store (or PADDOCK_STORE) is required")
    try:
        check_car_id(car)
        target = open_store(store)
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
    if as_json:
        typer.echo(json.dumps({name: vars(r) for name, r in reports.items()}, indent=2))
        return
    for name, r in reports.items():
        for session, frames in r.sessions.items():
            typer.echo(f"{car}/{session}: {frames} frames")
        typer.echo(f"{name}: {r.deleted} deleted records left out, {r.skipped} skipped")
        for reason in r.reasons[:10]:
            typer.echo(f"  skipped: {reason}")


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
    car, sep, name = session.partition("/")
    if not sep or not name:
        raise _fail(f"--session expects CAR/SESSION, got {session!r}")
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


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
