"""``paddock plugins``: which cameras, actuators, pilots and runtimes are installed, and whether they load."""

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edge import plugins


def _rows() -> list[dict[str, str | bool | None]]:
    rows: list[dict[str, str | bool | None]] = []
    for group in plugins.BUILT_IN:
        for name, plugin in sorted(plugins.plugins(group).items()):
            try:
                plugin.load()
                error = None
            except plugins.PluginError as exc:
                error = str(exc.__cause__ or exc)
            rows.append(
                {
                    "group": group,
                    "name": name,
                    "value": plugin.value,
                    "origin": plugin.origin,
                    "loads": error is None,
                    "error": error,
                }
            )
    return rows


def plugins_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per plugin, in a list.")] = False,
) -> None:
    """List each plugin group with its plugins, where they come from and whether they load.

    A plugin is an entry point in one of the groups paddock.cameras, paddock.actuators,
    paddock.pilots and paddock.runtimes; paddock's own are always listed, from a source
    checkout too. A plugin that does not load usually lacks an optional dependency (picamera2
    off a Raspberry Pi, LiteRT for tflite): the last column says which.
    """
    rows = _rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("group", "name", "object", "from", "loads")
    for row in rows:
        loads = "[green]yes[/]" if row["loads"] else f"[red]no[/]: {escape(str(row['error']))}"
        cells = [escape(str(row[k])) for k in ("group", "name", "value", "origin")]
        table.add_row(*cells, loads)
    Console(soft_wrap=True).print(table)


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins_command)
