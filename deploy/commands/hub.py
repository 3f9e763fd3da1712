"""``paddock hub``: run the hub (ingest, storage, REST API, deployments) and print its configuration."""

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from deploy.errors import UserError
from deploy.options import (
    JsonOpt,
    broker_option,
    merged,
    nested,
    parse_sets,
    set_option,
    store_option,
    token_option,
)
from hub.config import HubConfig, default_toml

hub_app = typer.Typer(
    help="The hub: lossless MQTT ingest to object storage, telemetry sinks, catalog, REST API, "
    "signed model deployments and job dispatch.",
    no_args_is_help=True,
)


@hub_app.command("serve", short_help="Run the hub until Ctrl-C or SIGTERM.")
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="hub.toml (see `paddock hub config`); defaults apply without one."
        ),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Override data_dir.")] = None,
    broker: Annotated[str | None, broker_option("Override mqtt.url, e.g. mqtt://broker:1883.")] = None,
    store: Annotated[
        str | None, store_option("Override store.url: a path, file:///path or s3://bucket/prefix.")
    ] = None,
    token: Annotated[str | None, token_option("Override api.token, the token API clients must send.")] = None,
    host: Annotated[str | None, typer.Option(help="Override api.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Override api.port (0: a free port).")] = None,
    set_: Annotated[list[str] | None, set_option("sinks.influxdb.enabled=true")] = None,
) -> None:
    """Run the hub until Ctrl-C or SIGTERM. Frames are acknowledged only once on disk, so stopping
    (or killing) it loses nothing: the broker keeps what it has not acknowledged.

    Settings come from the flags, then PADDOCK_* environment variables, then the config file."""
    from hub.service import serve as run

    flags = {"data_dir": data_dir.resolve() if data_dir else None, "mqtt.url": broker, "store.url": store,
             "api.token": token, "api.host": host, "api.port": port}  # fmt: skip
    overrides = {key: value for key, value in flags.items() if value is not None} | parse_sets(set_)
    cfg = HubConfig.load(config) if config else HubConfig()
    if overrides:
        data: dict[str, Any] = merged(cfg.model_dump(), nested(overrides))
        cfg = HubConfig.from_dict(data, source="command line")
    logging.basicConfig(
        level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    for noisy in ("httpx", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(run(cfg))
    except OSError as exc:  # the port is taken, the data directory is not writable…
        typer.echo(f"failed: {exc}", err=True)
        raise typer.Exit(1) from None


@hub_app.command("config")
def config(
    example: Annotated[
        bool, typer.Option("--example", help="Print every setting as a commented hub.toml (the default).")
    ] = False,
    check: Annotated[
        Path | None,
        typer.Option(
            "--check", metavar="FILE", help="Validate this hub.toml and print where everything will live."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print the default configuration as a commented hub.toml, or check one (`--check FILE`)."""
    if example and check is not None:
        raise UserError("use either --example or --check FILE")
    if check is None:
        if json_out:
            typer.echo(HubConfig().model_dump_json(indent=2))
        else:
            typer.echo(default_toml(), nl=False)
        return
    cfg = HubConfig.load(check)
    if json_out:
        typer.echo(cfg.model_dump_json(indent=2))
        return
    typer.echo(f"data_dir:  {cfg.data_dir}")
    typer.echo(f"broker:    {cfg.mqtt.broker}")
    typer.echo(f"api:       http://{cfg.api.host}:{cfg.api.port}")
    typer.echo(f"store:     {cfg.store_url}")
    typer.echo(f"catalog:   {cfg.catalog_path}")
    typer.echo(f"spool:     {cfg.spool_dir}")
    sinks = ["sqlite"] if cfg.sinks.sqlite.enabled else []
    if cfg.sinks.influxdb.enabled:
        sinks.append(f"influxdb ({cfg.sinks.influxdb.url}, api {cfg.sinks.influxdb.api})")
    typer.echo(f"sinks:     {', '.join(sinks) or 'none'}")


@hub_app.command("unit")
def unit(
    paddock: Annotated[
        str | None, typer.Option(help="Path of the paddock command for ExecStart (default: this one).")
    ] = None,
    config: Annotated[str, typer.Option(help="Config file the service runs with.")] = "/etc/paddock/hub.toml",
) -> None:
    """Print the hub's systemd unit for this installation."""
    import shutil
    import sys

    from deploy.systemd import hub_unit

    exe = paddock or shutil.which("paddock") or str(Path(sys.executable).with_name("paddock"))
    typer.echo(hub_unit(exe, config), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(hub_app, name="hub")
