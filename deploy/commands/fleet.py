"""``paddock fleet``: the fleet's broker identities, their ACLs, the TLS certificates, and the LAN
stack's generated secrets.

Every change rewrites Mosquitto's password and ACL files in the fleet directory; send Mosquitto a
SIGHUP (``docker compose kill -s HUP mosquitto``) to make it read them again.
"""

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from deploy.errors import UserError
from deploy.fleet.bundles import bundle_dir, refresh_ca, remove_bundle, write_bundle
from deploy.fleet.identities import FleetError, FleetStore, Role
from deploy.fleet.mosquitto import write_broker_files
from deploy.fleet.secrets import STACK_SECRETS, write_compose_env, write_stack_secrets
from deploy.fleet.tls import TLS_DIR, issue, load_or_make_ca
from deploy.options import JsonOpt, broker_option
from schemas.mqtt_url import BrokerUrl

fleet_app = typer.Typer(
    help="Broker identities for cars, trainers, operators and hubs; their ACLs; the fleet's TLS CA.",
    no_args_is_help=True,
)


def default_fleet_dir() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "paddock" / "fleet"


DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        envvar="PADDOCK_FLEET_DIR",
        help="The fleet directory (identities, broker files, bundles, certificates). "
        "Default: ~/.config/paddock/fleet.",
    ),
]
JsonOption = JsonOpt


def _open(directory: Path | None, prefix: str | None = None) -> FleetStore:
    try:
        return FleetStore.open(directory or default_fleet_dir(), prefix)
    except FleetError as exc:
        raise UserError(str(exc)) from None


def _save(store: FleetStore) -> tuple[Path, Path]:
    store.save()
    return write_broker_files(store)


@fleet_app.command("add")
def add(
    name: Annotated[
        str, typer.Argument(help="The identity's name: a car id, or a trainer's, hub's or operator's.")
    ],
    role: Annotated[
        Role, typer.Option("--role", help="What the identity may do (see docs/security.md).")
    ] = Role.CAR,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", help="A car's group (repeatable): it may read the group's model."),
    ] = None,
    broker: Annotated[
        str | None,
        broker_option("The broker URL this identity uses; the first one given becomes the fleet's default."),
    ] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Topic prefix of a new fleet.")] = None,
    directory: DirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add an identity with a new random password and write its credentials bundle."""
    store = _open(directory, prefix)
    if broker is not None:
        BrokerUrl.parse(broker)  # a ContractError is the user's: one line, exit code 2
    own_broker = None
    if broker is not None and not store.identities:
        store.broker_url = broker  # the first address given becomes the fleet's
    elif broker is not None and broker != store.broker_url:
        own_broker = broker
    try:
        identity, password = store.add(name, role, tuple(group or ()), own_broker)
    except FleetError as exc:
        raise UserError(str(exc)) from None
    passwd, acl = _save(store)
    bundle = write_bundle(store, identity, password)
    if (store.directory / TLS_DIR / "ca.key").exists():
        authority, _ = load_or_make_ca(store.directory / TLS_DIR)
        issue(authority, bundle / "client.key", bundle / "client.crt", name)
    if as_json:
        typer.echo(json.dumps({"name": name, "role": str(role), "bundle": str(bundle), "acl": str(acl)}))
        return
    typer.echo(f"added {role} {name}; credentials bundle: {bundle}")
    typer.echo(f"updated {passwd} and {acl}: send Mosquitto a SIGHUP to apply")


@fleet_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The identity to remove.")],
    directory: DirOption = None,
) -> None:
    """Remove an identity: the broker refuses it after its next reload (SIGHUP)."""
    store = _open(directory)
    try:
        identity = store.remove(name)
    except FleetError as exc:
        raise UserError(str(exc)) from None
    passwd, acl = _save(store)
    remove_bundle(store, name)
    typer.echo(f"removed {identity.role} {name}; updated {passwd} and {acl}: send Mosquitto a SIGHUP")


@fleet_app.command("list")
def list_cmd(directory: DirOption = None, as_json: JsonOption = False) -> None:
    """List the fleet's identities."""
    store = _open(directory)
    items = sorted(store.identities.values(), key=lambda i: (i.role, i.name))
    if as_json:
        rows = [{"name": i.name, "role": str(i.role), "groups": list(i.groups)} for i in items]
        typer.echo(json.dumps({"prefix": store.prefix, "broker": store.broker_url, "identities": rows}))
        return
    if not items:
        typer.echo(f"no identities in {store.directory}; add one with `paddock fleet add CAR`")
        return
    for i in items:
        groups = f"  groups: {', '.join(i.groups)}" if i.groups else ""
        typer.echo(f"{i.role:<9} {i.name}{groups}")


@fleet_app.command("ca")
def ca(
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="A name or address clients use to reach the broker (repeatable). "
            "Default: the fleet's broker host, localhost and 127.0.0.1.",
        ),
    ] = None,
    api_host: Annotated[
        list[str] | None,
        typer.Option(
            "--api-host",
            help="A name or address clients use to reach the hub's API (repeatable), for its HTTPS "
            "certificate tls/hub-api.crt. Default: the --host list.",
        ),
    ] = None,
    directory: DirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make the fleet's CA (once), the broker's and the hub API's certificates, and a client
    certificate per identity.

    Existing bundles get the CA certificate (and a car's car.toml its ca_file); point Mosquitto's
    mqtts:// listener at tls/broker.crt and tls/broker.key (see deploy/compose/mosquitto.conf), and
    the hub's [api] cert_file and key_file at tls/hub-api.crt and tls/hub-api.key."""
    store = _open(directory)
    tls = store.directory / TLS_DIR
    hosts = list(dict.fromkeys(host or [BrokerUrl.parse(store.broker_url).host, "localhost", "127.0.0.1"]))
    try:
        authority, new = load_or_make_ca(tls)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot use the CA in {tls}: {exc}") from None
    issue(authority, tls / "broker.key", tls / "broker.crt", "paddock broker", hosts=hosts)
    api_hosts = list(dict.fromkeys(api_host or hosts))
    issue(authority, tls / "hub-api.key", tls / "hub-api.crt", "paddock hub API", hosts=api_hosts)
    bundles = refresh_ca(store)
    for out in bundles:
        name = out.name
        issue(authority, out / "client.key", out / "client.crt", name)
    summary = {
        "ca": str(tls / "ca.crt"),
        "new_ca": new,
        "broker_cert": str(tls / "broker.crt"),
        "hosts": hosts,
        "api_cert": str(tls / "hub-api.crt"),
        "api_hosts": api_hosts,
        "bundles": [str(bundle_dir(store, b.name)) for b in bundles],
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(f"{'made' if new else 'kept'} the fleet CA {tls / 'ca.crt'}")
    typer.echo(f"broker certificate {tls / 'broker.crt'} for {', '.join(hosts)}")
    typer.echo(
        f"hub API certificate {tls / 'hub-api.crt'} for {', '.join(api_hosts)} (hub.toml [api] cert_file)"
    )
    typer.echo(
        f"CA and client certificates in {len(bundles)} bundle(s); restart Mosquitto to load its certificate"
    )


@fleet_app.command("secrets")
def secrets_cmd(
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Replace every secret (InfluxDB's only on a fresh volume).")
    ] = False,
    env: Annotated[
        Path | None,
        typer.Option(
            "--env", help="Also set PADDOCK_FLEET_DIR in this compose .env (its other lines stay), mode 0600."
        ),
    ] = None,
    directory: DirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate the LAN stack's secrets (InfluxDB, Grafana, the hub's tokens) into secrets/, mode 0600.

    Existing ones are kept. deploy/compose/docker-compose.yml reads them as compose secrets."""
    store = _open(directory)
    made = write_stack_secrets(store.directory, rotate)
    if env is not None:
        write_compose_env(env, store.directory)
    if as_json:
        typer.echo(json.dumps({n: {"file": str(p), "new": new} for n, (p, new) in made.items()}))
        return
    for name, (path, new) in made.items():
        typer.echo(f"{'made' if new else 'kept'} {path}: {STACK_SECRETS[name]}")
    if env is not None:
        typer.echo(f"wrote {env}")


def register(app: typer.Typer) -> None:
    app.add_typer(fleet_app, name="fleet")
