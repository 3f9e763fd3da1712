"""The ``paddock`` command.

Each room contributes its subcommands through a module in ``deploy/commands/`` that defines
``register(app)``; a module whose optional dependencies are not installed is left out with a hint
in ``paddock --help`` instead of failing the whole command.
"""

import importlib
import pkgutil
from typing import Annotated

import typer

import schemas
from deploy import commands
from schemas.release import install_hint

app = typer.Typer(
    name="paddock",
    help="paddock: fleets of small autonomous cars — car daemon, hub, trainers and simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

_unavailable: dict[str, str] = {}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"paddock {schemas.__version__} (wire {schemas.WIRE_VERSION})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """paddock: fleets of small autonomous cars — car daemon, hub, trainers and simulator."""


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        try:
            module = importlib.import_module(f"{commands.__name__}.{info.name}")
        except ImportError as exc:
            _unavailable[info.name] = str(exc)
            continue
        module.register(app)
    if _unavailable:
        missing = "; ".join(f"{name} ({reason})" for name, reason in sorted(_unavailable.items()))
        text = f"Not available in this installation: {missing}. For everything: {install_hint('all')}."
        app.info.epilog = text.replace("[", "\\[")  # rich would take "[car]" for markup and drop it


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
