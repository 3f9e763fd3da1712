"""``paddock hub``: run the hub (ingest, storage, REST API, deployments) and print its configuration."""

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from hub.config import HubConfig, HubConfigError, default_toml

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
    mqtt_url: Annotated[
        str | None, typer.Option("--mqtt", help="Override mqtt.url, e.g. mqtt://broker:1883.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Override api.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Override api.port (0: a free port).")] = None,
) -> None:
    """Run the hub until Ctrl-C or SIGTERM. Frames are acknowledged only once on disk, so stopping
    (or killing) it loses nothing: the broker keeps what it has not acknowledged."""
    from hub.service import serve as run

    try:
        cfg = HubConfig.load(config) if config else HubConfig()
        overrides = {}
        if data_dir is not None:
            overrides["data_dir"] = data_dir.resolve()
        cfg = cfg.model_copy(update=overrides) if overrides else cfg
        if mqtt_url is not None:
            cfg.mqtt.url = mqtt_url
        if host is not None:
            cfg.api.host = host
        if port is not None:
            cfg.api.port = port
    except (HubConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(
        level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    for noisy in ("httpx", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(run(cfg))
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@hub_app.command("config")
def config() -> None:
    """Print the default configuration as a commented hub.toml."""
    typer.echo(default_toml(), nl=False)


@hub_app.command("check-config")
def check_config(path: Annotated[Path, typer.Argument(help="The hub.toml to validate.")]) -> None:
    """Validate a hub.toml and print where everything will live."""
    try:
        cfg = HubConfig.load(path)
    except HubConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
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
