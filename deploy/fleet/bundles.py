"""Per-identity credentials bundles: what provisioning copies onto a car, a trainer or the hub.

``bundles/{name}/`` holds:

- ``username``, ``password`` (mode 0600) and ``broker-url`` (the URL with the user name, no password);
- ``ca.crt`` when the fleet has a CA (``paddock fleet ca``), for ``mqtts://`` brokers, and the
  identity's client certificate ``client.crt``/``client.key`` (common name: the identity's name),
  for a broker that requires one (``deploy/compose/mosquitto-mtls.conf``);
- for a car, ``car.toml``: the ``[car]`` and ``[broker]`` sections of its configuration, with the
  password and CA as files beside it (the car daemon resolves relative paths from the file);
- for the other roles, ``broker.env``: ``PADDOCK_BROKER=`` the full URL with the password (mode
  0600), since the hub and the trainer agent take their credentials from the URL.
"""

import shutil
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from deploy.fleet.identities import FleetStore, Identity, Role
from infra.files import write_atomic

BUNDLES_DIR = "bundles"
CA_CERT = "tls/ca.crt"


def with_credentials(url: str, username: str, password: str | None = None) -> str:
    """``url`` with ``username`` (and ``password``) in place of whatever credentials it had."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = quote(username, safe="")
    if password is not None:
        netloc += ":" + quote(password, safe="")
    netloc += f"@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _broker(store: FleetStore, identity: Identity) -> str:
    return identity.broker_url or store.broker_url


def bundle_dir(store: FleetStore, name: str) -> Path:
    return store.directory / BUNDLES_DIR / name


def write_bundle(store: FleetStore, identity: Identity, password: str) -> Path:
    out = bundle_dir(store, identity.name)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    url = with_credentials(_broker(store, identity), identity.name)
    write_atomic(out / "username", f"{identity.name}\n".encode(), mode=0o600)
    write_atomic(out / "password", f"{password}\n".encode(), mode=0o600)
    write_atomic(out / "broker-url", f"{url}\n".encode(), mode=0o600)
    ca = store.directory / CA_CERT
    if ca.exists():
        shutil.copyfile(ca, out / "ca.crt")
    if identity.role is Role.CAR:
        write_atomic(out / "car.toml", _car_toml(store, identity, url, ca.exists()).encode(), mode=0o600)
    else:
        full = with_credentials(_broker(store, identity), identity.name, password)
        write_atomic(out / "broker.env", f"PADDOCK_BROKER={full}\n".encode(), mode=0o600)
    return out


def _car_toml(store: FleetStore, identity: Identity, url: str, has_ca: bool) -> str:
    lines = [
        "# The car's identity on the fleet's broker, from `paddock fleet add`.",
        "# Merge these sections into the car's configuration; keep the files beside it.",
        "[car]",
        f'id = "{identity.name}"',
    ]
    if identity.groups:
        lines.append(f'group = "{identity.groups[0]}"')
    lines += ["", "[broker]", f'url = "{url}"', f'prefix = "{store.prefix}"', 'password_file = "password"']
    if has_ca:  # `paddock fleet ca` and `fleet add` put the client certificate beside it
        lines += ['ca_file = "ca.crt"', 'cert_file = "client.crt"', 'key_file = "client.key"']
    return "\n".join(lines) + "\n"


def remove_bundle(store: FleetStore, name: str) -> None:
    shutil.rmtree(bundle_dir(store, name), ignore_errors=True)


def refresh_ca(store: FleetStore) -> list[Path]:
    """Put the fleet's CA certificate into every existing bundle (and a car's ``car.toml``)."""
    ca = store.directory / CA_CERT
    done = []
    for identity in store.identities.values():
        out = bundle_dir(store, identity.name)
        if not out.is_dir():
            continue
        shutil.copyfile(ca, out / "ca.crt")
        if identity.role is Role.CAR:
            url = with_credentials(_broker(store, identity), identity.name)
            write_atomic(out / "car.toml", _car_toml(store, identity, url, True).encode(), mode=0o600)
        done.append(out)
    return done
