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


HELP = (
    "List each plugin group with its plugins, the package that declares each, and whether it loads.\n\n"
    "A plugin is an entry point in paddock.cameras, paddock.actuators, paddock.pilots or "
    "paddock.runtimes; paddock's own are listed from a source checkout too. Loading imports the entry "
    "point's object; a camera's or actuators' hardware library (picamera2, gpiozero) is imported only "
    "when the car builds its body."
)


def plugins_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per plugin, in a list.")] = False,
) -> None:
    """List each plugin group with its plugins (see HELP)."""
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
    app.command("plugins", help=HELP)(plugins_command)
