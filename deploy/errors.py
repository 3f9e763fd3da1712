"""How the ``paddock`` command reports errors: one line on stderr and an exit code.

Commands do not catch errors to print them. They let them rise to the entry point
(:class:`deploy.cli.PaddockGroup`), which turns

* a *user error* (a bad flag, URL, config, store, track, or a named input file that is missing) into
  ``error: …`` and exit code 2,
* a *failure of the work itself* (a launcher that crashed, a demo stage that failed, hardware that
  did not answer) into ``failed: …`` and exit code 1,

and leaves anything else alone, so a genuine bug still shows its traceback. Ctrl-C is exit code 130.

The exception types are named by module and class and looked up in ``sys.modules`` only: an
exception can only have been raised if its module was imported, and the command line must not
import a room (or its optional dependencies) just to classify an error.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from typer import BadParameter

# typer vendors click (typer._click) in recent releases and uses click itself in older ones.
_CLICK = BadParameter.__module__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Something the user asked for cannot be done as asked: one line, exit code 2."""


class WorkFailed(Exception):
    """The work was started and failed: one line, exit code 1."""


# The rooms' own error types that always mean "the input was wrong".
USER_ERRORS = (
    "pydantic_core:ValidationError",
    f"{_CLICK}:ClickException",  # a bad flag or argument
    "schemas.errors:ContractError",
    "infra.config:ConfigError",  # edge.config's and hub.config's errors derive from it
    "infra.store:StoreError",
    "firmware.sim.track:TrackError",
    "firmware.sim.reward:RewardFunctionError",
    "firmware.calibration:CalibrationError",
)
# …and those that mean "the work failed" (exit code 1, no traceback).
FAILURES = (
    "trainer.launch:LaunchError",
    "trainer.export:ExportError",
    "deploy.demo:DemoError",
    "firmware.hardware.pulse:ActuatorError",
)
# OS errors about a file are the user's when the file is one named on the command line.
_FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def is_help_request(exc: BaseException) -> bool:
    """click's "no arguments: here is the help" (printed already; click calls it an error)."""
    return type(exc).__name__ == "NoArgsIsHelpError" and type(exc).__module__ == _CLICK


def _loaded(names: Iterable[str]) -> tuple[type[BaseException], ...]:
    types = []
    for name in names:
        module, _, attr = name.partition(":")
        found = getattr(sys.modules.get(module), attr, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            types.append(found)
    return tuple(types)


def classify(exc: BaseException, argv: Iterable[str] = ()) -> tuple[int, str] | None:
    """(exit code, one-line message) for an error to report, or None for a bug (traceback)."""
    if isinstance(exc, UserError):
        return EXIT_USAGE, one_line(str(exc))
    if isinstance(exc, WorkFailed):
        return EXIT_FAILED, one_line(str(exc))
    if isinstance(exc, _FILE_ERRORS) and exc.filename is not None and _named(exc.filename, argv):
        return EXIT_USAGE, f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, _loaded(USER_ERRORS)):
        return EXIT_USAGE, describe(exc)
    if isinstance(exc, _loaded(FAILURES)):
        return EXIT_FAILED, describe(exc)
    return None


def describe(exc: BaseException) -> str:
    """One line for a known error; pydantic's and click's own multi-line texts folded."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":
        return "; ".join(_pydantic_line(e) for e in errors()) or str(exc)
    format_message = getattr(exc, "format_message", None)
    if callable(format_message):  # click: "Invalid value for '--x': …" plus where to read more
        text = one_line(str(format_message()))
        ctx = getattr(exc, "ctx", None)
        return f"{text} (see `{ctx.command_path} --help`)" if ctx is not None else text
    return one_line(str(exc))


def _pydantic_line(err: object) -> str:
    assert isinstance(err, dict)
    loc = ".".join(str(p) for p in err.get("loc", ()))
    msg = "unknown setting (check the spelling)" if err.get("type") == "extra_forbidden" else err["msg"]
    value = err.get("input")
    shown = ""
    if isinstance(value, str | int | float) and len(repr(value)) < 80 and repr(value) not in msg:
        shown = f" (got {value!r})"
    text = one_line(f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}")
    return text


def one_line(text: str) -> str:
    text = text.replace("Value error, ", "")  # pydantic's prefix for a validator's own message
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or "(no message)"


def _named(filename: object, argv: Iterable[str]) -> bool:
    """Whether ``filename`` is (or, for a directory argument, lies in) a path given as an argument."""
    target = Path(str(filename))
    for arg in argv:
        value = arg.partition("=")[2] if arg.startswith("--") and "=" in arg else arg
        value = value.removeprefix("@")
        if not value or value.startswith("-"):
            continue
        named = Path(value)
        if target == named or (named.parts and str(named) not in (".", "/") and named in target.parents):
            return True
    return False


@contextlib.contextmanager
def as_user_error(*types: type[BaseException]) -> Iterator[None]:
    """Treat these errors from a library call as the user's (for rooms that use ValueError so)."""
    try:
        yield
    except types as exc:
        raise UserError(describe(exc)) from exc
