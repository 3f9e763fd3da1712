"""``paddock schemas``: the wire contract — JSON Schema files and envelope inspection."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from deploy.errors import UserError
from deploy.options import JsonOpt
from schemas import jsonschema
from schemas.envelope import decode
from schemas.errors import ContractError
from schemas.signing import is_signed_header, manifest_bytes

schemas_app = typer.Typer(help="Wire contracts: JSON Schemas and envelope inspection.", no_args_is_help=True)


@schemas_app.command("export")
def export(
    directory: Annotated[
        Path, typer.Argument(help="Where to write the *.schema.json files.")
    ] = jsonschema.JSON_DIR,
) -> None:
    """Write a JSON Schema file for every message."""
    for name in jsonschema.write(directory):
        typer.echo(directory / name)


@schemas_app.command("check")
def check(
    directory: Annotated[Path, typer.Argument(help="The directory to compare.")] = jsonschema.JSON_DIR,
) -> None:
    """Fail if the JSON Schema files differ from the message models."""
    bad = jsonschema.stale(directory)
    if bad:
        typer.echo(f"stale: {', '.join(bad)} — run `paddock schemas export`", err=True)
        raise typer.Exit(1)
    typer.echo("JSON schemas are up to date")


@schemas_app.command("inspect")
def inspect(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="An envelope file.")],
    json_out: JsonOpt = False,
) -> None:
    """Print the header of an envelope (a frame or a model) and its payload size."""
    try:
        env = decode(path.read_bytes())
    except ContractError as exc:  # name the file in the one-line error
        raise UserError(f"{path}: {exc}") from exc
    out = {"header": env.header, "payload_bytes": len(env.payload)}
    manifest = _signed_manifest(env.header)
    if manifest is not None:
        out["manifest"] = manifest
    if json_out:
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    typer.echo(json.dumps(env.header, indent=2, ensure_ascii=False))
    if manifest is not None:
        typer.echo("signed manifest (the signature is not checked here):")
        typer.echo(json.dumps(manifest, indent=2, ensure_ascii=False))
    typer.echo(f"payload: {len(env.payload)} bytes")


def _signed_manifest(header: dict[str, Any]) -> Any:
    """The manifest inside a signed model header, decoded for reading (None for other headers)."""
    if not is_signed_header(header):
        return None
    try:
        return json.loads(manifest_bytes(header))
    except (ContractError, ValueError):
        return None


def register(app: typer.Typer) -> None:
    app.add_typer(schemas_app, name="schemas")
