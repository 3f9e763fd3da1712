"""Options every ``paddock`` command spells the same way.

One flag per concept: ``--broker``, ``--hub``, ``--store`` and ``--token`` for connections (each also
read from a ``PADDOCK_*`` environment variable), repeatable ``--set key=value`` for overrides,
``--out`` for where output goes, ``--json`` for machine-readable output.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from deploy.errors import UserError

ENV_BROKER = "PADDOCK_BROKER"
ENV_HUB = "PADDOCK_HUB"
ENV_STORE = "PADDOCK_STORE"
ENV_TOKEN = "PADDOCK_TOKEN"
ENV_MLFLOW = "PADDOCK_MLFLOW"
# The hub has read its API token from PADDOCK_HUB_TOKEN since it first had one (compose's .env).
ENV_TOKEN_LEGACY = "PADDOCK_HUB_TOKEN"

STORE_HELP = "Object store: a directory, file://… or s3://bucket/prefix?endpoint=http://host:9000."


def ca_file_option(help: str = "The fleet's CA certificate (ca.crt): verifies an https:// hub.") -> Any:
    return typer.Option("--ca-file", envvar="PADDOCK_CA_FILE", help=help, metavar="FILE")


CaFileOpt = Annotated[Path | None, ca_file_option()]


def broker_option(help: str) -> Any:
    return typer.Option("--broker", envvar=ENV_BROKER, help=help, metavar="URL")


def hub_option(help: str) -> Any:
    return typer.Option("--hub", envvar=ENV_HUB, help=help, metavar="URL")


def store_option(help: str = STORE_HELP) -> Any:
    return typer.Option("--store", envvar=ENV_STORE, help=help, metavar="URL")


def token_option(help: str) -> Any:
    return typer.Option("--token", envvar=[ENV_TOKEN, ENV_TOKEN_LEGACY], help=help, show_default=False)


def mlflow_option(help: str) -> Any:
    return typer.Option("--mlflow", envvar=ENV_MLFLOW, help=help, metavar="URL")


def set_option(example: str) -> Any:
    return typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help=f"Override a setting, e.g. --set {example} (repeatable; values are TOML, e.g. 50, true, "
        "'\"text\"', [1, 2]; anything else is a string).",
    )


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def parse_sets(values: list[str] | None) -> dict[str, Any]:
    """``["loop.hz=50", "car.id=x"]`` → ``{"loop.hz": 50, "car.id": "x"}``.

    A value is read as a TOML value (numbers, booleans, strings in quotes, arrays, inline tables),
    else as JSON, else taken as the string it is.
    """
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        out[key] = _value(raw.strip())
    return out


def _value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"model.width": 64}`` → ``{"model": {"width": 64}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {key}: {part} is already set to a value")
            node = child
        node[leaf] = value
    return out


def merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update``'s tables merged into it, key by key."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
