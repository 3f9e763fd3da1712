"""The ``paddock`` command.

Each room contributes its subcommands through a module in ``deploy/commands/`` that defines
``register(app)``; a module whose optional dependencies are not installed is left out with a hint
in ``paddock --help`` instead of failing the whole command.

Errors are reported here and nowhere else (see :mod:`deploy.errors`): a user error is one line on
stderr and exit code 2, a failure of the work one line and exit code 1, a bug a traceback.
"""

import contextlib
import importlib
import pkgutil
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import HAS_RICH, TyperGroup

import schemas
from deploy import commands
from deploy.errors import EXIT_USAGE, classify, is_help_request
from schemas.release import install_hint

_ARGV_KEY = "paddock.argv"


class PaddockGroup(TyperGroup):
    """The root command: escapes help texts for Rich, and turns known errors into one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if HAS_RICH and self.rich_markup_mode == "rich":
            _escape_help(self)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta[_ARGV_KEY] = list(args)
        with _reported(ctx):
            return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        with _reported(ctx):
            return super().invoke(ctx)


@contextlib.contextmanager
def _reported(ctx: Any) -> Iterator[None]:
    """Report a known error as one line on stderr and exit with its code; let bugs through."""
    try:
        yield
    except Exception as exc:
        verdict = None if is_help_request(exc) else classify(exc, ctx.meta.get(_ARGV_KEY, ()))
        if verdict is None:
            raise
        code, message = verdict
        typer.echo(f"{'error' if code == EXIT_USAGE else 'failed'}: {message}", err=True)
        raise typer.Exit(code) from None


def _escape_help(command: Any) -> None:
    """Help texts are plain text: keep Rich from reading "[default: …]" or "[sim]" as markup."""
    for attr in ("help", "short_help", "epilog"):
        text = getattr(command, attr, None)
        if isinstance(text, str):
            setattr(command, attr, escape(text))
    for param in command.params:
        text = getattr(param, "help", None)
        if isinstance(text, str):
            param.help = escape(text)  # type: ignore[attr-defined,unused-ignore]
    for sub in getattr(command, "commands", {}).values():
        _escape_help(sub)


app = typer.Typer(
    name="paddock",
    cls=PaddockGroup,
    help="paddock: fleets of small autonomous cars — car daemon, hub, trainers and simulator.\n\n"
    "Exit codes: 0 done, 1 the work failed, 2 a user error (bad flag, URL, file, track or config), "
    "130 interrupted. Connection flags read PADDOCK_BROKER, PADDOCK_HUB, PADDOCK_STORE and "
    "PADDOCK_TOKEN when not given.",
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
        app.info.epilog = (
            f"Not available in this installation: {missing}. For everything: {install_hint('all')}."
        )


_register_all()


def main() -> None:
    app(prog_name="paddock")


if __name__ == "__main__":  # python -m deploy.cli
    main()
