"""The LAN stack's own secrets, generated at set-up: no service of the compose stack has a default.

``paddock fleet secrets`` writes one file per secret into ``secrets/`` of the fleet directory
(mode 0600, each a fresh random value; an existing file is kept, so running it again changes
nothing unless asked to rotate). ``deploy/compose/docker-compose.yml`` hands them to the services
as compose secrets (``/run/secrets/NAME``): InfluxDB's first user and admin token, Grafana's
admin password and its InfluxDB token, the hub's admin token, InfluxDB token and Prometheus' read
token. No secret is in an environment variable, a config file or the compose file.
"""

import secrets
from pathlib import Path

from infra.files import write_atomic

SECRETS_DIR = "secrets"
FLEET_DIR_VAR = "PADDOCK_FLEET_DIR"  # the compose file finds the fleet directory by it
# name -> what it is (the compose file's secrets are these names)
STACK_SECRETS = {
    "influxdb-password": "InfluxDB's first user (paddock): its password",
    "influxdb-token": "InfluxDB's admin token: the hub writes with it, Grafana reads with it",
    "grafana-admin-password": "Grafana's admin password (user admin)",
    "hub-token": "the hub's admin API token",
    "prometheus-token": "a read-scoped hub API token: Prometheus scrapes /metrics with it",
}


def write_stack_secrets(fleet_dir: Path, rotate: bool = False) -> dict[str, tuple[Path, bool]]:
    """Make the secrets that are missing (all of them with ``rotate``); returns name -> (file, new)."""
    out = fleet_dir / SECRETS_DIR
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    done = {}
    for name in STACK_SECRETS:
        path = out / name
        new = rotate or not path.exists()
        if new:
            write_atomic(path, (secrets.token_urlsafe(32) + "\n").encode(), mode=0o600)
        done[name] = (path, new)
    return done


def write_compose_env(env: Path, fleet_dir: Path) -> None:
    """Point the compose ``.env`` at ``fleet_dir`` (mode 0600), keeping the other settings it holds
    (``PADDOCK_MOSQUITTO_CONF``)."""
    line = f"{FLEET_DIR_VAR}={fleet_dir.resolve()}"
    kept = env.read_text().splitlines() if env.exists() else []
    kept = [k for k in kept if not k.startswith(f"{FLEET_DIR_VAR}=")]
    write_atomic(env, "\n".join([line, *kept]).encode() + b"\n", mode=0o600)
