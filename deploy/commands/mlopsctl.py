"""``paddock hub smoke-test|canary|canaries``: the MLOps steps an operator (or a pipeline) runs
against the hub: the car's own smoke test on a registered model, recorded for the evaluation gate;
a canary (one car of a group first, the hub promotes or rolls back); the canaries' state."""

from __future__ import annotations

from typing import Annotated

import typer

from deploy.commands.hub import hub_app
from deploy.commands.hubctl import (
    DEFAULT_HUB,
    HubClient,
    HubOpt,
    TokenFileOpt,
    TokenOpt,
    model_ref,
    show_rows,
)
from deploy.errors import UserError, WorkFailed
from deploy.options import CaFileOpt, JsonOpt
from deploy.smoke import smoke_test_on_hub


@hub_app.command("smoke-test", short_help="Run the car's smoke test on a model; record it for the gate.")
def smoke_test(
    model: Annotated[str, typer.Argument(help="NAME:VERSION, e.g. pilot:3")],
    latency_ms: Annotated[
        float, typer.Option(min=0.01, help="Latency budget (a car's default: 80% of a 20 Hz tick).")
    ] = 40.0,
    hub: HubOpt = DEFAULT_HUB,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download the model from the hub, load it in the car's runtime and run the car's own smoke test
    (finite outputs of the card's shape and range, the input shape, the latency budget), then record
    the result on the hub, where `gate_smoke_test = true` makes the evaluation gate need it.
    Exit code 1 when the model fails."""
    import json

    name, version = model_ref(model)
    client = HubClient(hub, token, token_file, ca_file)
    result = smoke_test_on_hub(client, name, version, latency_ms, "paddock hub smoke-test", UserError)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    if not result["passed"]:
        raise WorkFailed(f"{model} fails the car's smoke test: {result['reason']}")
    if not as_json:
        typer.echo(f"{model} passes the car's smoke test: {result['latency_ms']} ms ({result['runtime']})")


@hub_app.command("canary", short_help="Try a model on one car of a group first; the hub decides.")
def canary(
    model: Annotated[str, typer.Argument(help="NAME:VERSION, e.g. pilot:3")],
    group: Annotated[str, typer.Option(help="The group whose cars run the current model.")],
    car: Annotated[
        list[str] | None, typer.Option(help="A canary car (repeat; default: the hub picks).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Start even if the evaluation gate refuses (recorded).")
    ] = False,
    hub: HubOpt = DEFAULT_HUB,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    import json

    name, version = model_ref(model)
    body = {"model": {"name": name, "version": version}, "group": group, "force": force}
    body |= {"cars": car} if car else {}
    out = HubClient(hub, token, token_file, ca_file).call(
        "POST", "/canaries", json=body | {"requested_by": "paddock hub canary"}
    )
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(
        f"{out['id']}: {model} on {', '.join(out['cars'])} for {out['window_s']:g} s; "
        f"{len(out['others'])} other cars stay on {out['baseline']}"
    )


@hub_app.command("canaries", short_help="Canaries: running and decided, with their reasons.")
def canaries(
    hub: HubOpt = DEFAULT_HUB,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    data = HubClient(hub, token, token_file, ca_file).call("GET", "/canaries")
    columns = [
        ("id", lambda c: c["id"]),
        ("group", lambda c: c["group"]),
        ("model", lambda c: c["model"]),
        ("cars", lambda c: ", ".join(c["cars"])),
        ("state", lambda c: c["state"]),
        ("reasons", lambda c: "; ".join(c["reasons"])),
    ]
    show_rows(data, as_json, columns, "canaries")


JOINS = "hub"
"""The group these commands belong to (``paddock hub --help`` lists them)."""


def register(app: typer.Typer) -> None:
    """Nothing to add at the top: these commands joined ``paddock hub`` when this module was imported."""
