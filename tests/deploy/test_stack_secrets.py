"""The LAN stack's credentials: `paddock fleet secrets` generates each one (random, distinct, mode
0600); the compose file, hub.toml and Grafana's data source read them as compose secrets and hold
no credential of their own; only the broker, the hub API and Grafana are open to the LAN."""

import json
import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from deploy.cli import app
from deploy.fleet.secrets import STACK_SECRETS
from hub.config import HubConfig

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
LAN_PORTS = {"mosquitto": "8883:8883", "hub": "8080:8080", "grafana": "3000:3000"}
runner = CliRunner()


def _secrets(fleet: Path, *args: str) -> dict[str, dict[str, object]]:
    result = runner.invoke(app, ["fleet", "secrets", "--dir", str(fleet), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_generation_writes_distinct_random_secrets_readable_by_the_owner_only(tmp_path: Path) -> None:
    fleet, env = tmp_path / "fleet", tmp_path / ".env"
    made = _secrets(fleet, "--env", str(env))
    assert set(made) == set(STACK_SECRETS) and all(m["new"] for m in made.values())
    values = {}
    for name, m in made.items():
        path = Path(str(m["file"]))
        assert path.parent == fleet / "secrets" and path.name == name
        assert path.stat().st_mode & 0o777 == 0o600, name
        values[name] = path.read_text().strip()
        assert len(values[name]) >= 40, name  # 32 random bytes, base64url
    assert len(set(values.values())) == len(values)
    assert (fleet / "secrets").stat().st_mode & 0o077 == 0
    assert env.read_text() == f"PADDOCK_FLEET_DIR={fleet.resolve()}\n" and env.stat().st_mode & 0o777 == 0o600
    env.write_text(env.read_text() + "PADDOCK_MOSQUITTO_CONF=mosquitto-mtls.conf\n")
    again = _secrets(fleet, "--env", str(env))  # kept: a running stack's InfluxDB keeps its first token
    assert env.read_text().splitlines() == [
        f"PADDOCK_FLEET_DIR={fleet.resolve()}",
        "PADDOCK_MOSQUITTO_CONF=mosquitto-mtls.conf",  # the operator's own setting stays
    ]
    assert not any(m["new"] for m in again.values())
    assert {n: Path(str(m["file"])).read_text().strip() for n, m in again.items()} == values
    rotated = _secrets(fleet, "--rotate")
    assert all(Path(str(m["file"])).read_text().strip() != values[n] for n, m in rotated.items())
    other = _secrets(tmp_path / "other-fleet")  # another stack: other secrets
    assert not {Path(str(m["file"])).read_text() for m in other.values()} & set(values.values())


def test_the_compose_stack_has_no_default_credentials() -> None:
    text = (COMPOSE / "docker-compose.yml").read_text()
    spec = yaml.safe_load(text)
    # no variable with a fallback but the broker's config file name
    assert re.findall(r"\$\{(\w+):-", text) == ["PADDOCK_MOSQUITTO_CONF"]
    used: set[str] = set()
    for name, service in spec["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), f"{name}: {key}"
                used.add(str(value).removeprefix("/run/secrets/"))
        used.update(service.get("secrets", []))
    assert used == set(STACK_SECRETS)
    for secret, source in spec["secrets"].items():
        assert secret in STACK_SECRETS and source["file"].endswith(f"/secrets/{secret}"), secret
    grafana = spec["services"]["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    datasource = (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "paddock.yaml").read_text()
    assert "$__file{/run/secrets/influxdb-token}" in datasource


def test_only_the_broker_the_hub_api_and_grafana_are_open_to_the_lan() -> None:
    services = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            if name in LAN_PORTS:
                assert port == LAN_PORTS[name], f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name} listens on the LAN: {port}"
    assert "ports" not in services["influxdb"]


def test_the_compose_hub_reads_its_secrets_from_files_and_serves_https() -> None:
    cfg = HubConfig.load(COMPOSE / "hub.toml")
    hub_secrets = set(
        yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]["hub"]["secrets"]
    )
    files = [cfg.api.token_file, cfg.sinks.influxdb.token_file, *(t.token_file for t in cfg.api.tokens)]
    assert cfg.api.token is None and cfg.sinks.influxdb.token is None
    assert all(t.token is None for t in cfg.api.tokens)
    assert {str(f).removeprefix("/run/secrets/") for f in files if f is not None} == hub_secrets
    assert cfg.api.cert_file is not None and cfg.api.key_file is not None
