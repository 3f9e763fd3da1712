"""The LAN stack's service files: both systemd units verify, and the compose services have health
checks (the broker's run here against the compose Mosquitto config) and start in order."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from deploy.cli import app
from tests.hub.test_compose import ComposeMosquitto, Login, compose_fleet  # noqa: F401 (a fixture)
from tests.missing import missing

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        missing("systemd-analyze not found: apt-get install systemd")
    return found


def test_car_and_hub_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _analyze()
    paddock = shutil.which("paddock") or str(Path(sys.executable).with_name("paddock"))
    units = []
    for room, name in (("car", "paddock-car.service"), ("hub", "paddock-hub.service")):
        result = CliRunner().invoke(app, [room, "unit", "--paddock", paddock])
        assert result.exit_code == 0, result.output
        assert f"ExecStart={paddock} {room} " in result.output
        (tmp_path / name).write_text(result.output)
        units.append(str(tmp_path / name))
    out = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, cwd=tmp_path)
    print(f"$ systemd-analyze verify {' '.join(Path(u).name for u in units)} -> exit {out.returncode}")
    print(out.stderr)
    assert out.returncode == 0, out.stderr
    assert "paddock-" not in out.stderr  # no warning about either unit


def test_compose_services_have_health_checks_and_wait_for_them() -> None:
    services = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        image = svc.get("image", "")
        assert ":latest" not in image and not image.startswith("influxdb:1."), f"{name}: {image}"
        for dep, cond in svc.get("depends_on", {}).items():
            assert cond == {"condition": "service_healthy"}, f"{name} -> {dep}"
    assert services["influxdb"]["image"].startswith("influxdb:2.")
    assert set(services["hub"]["depends_on"]) == {"mosquitto", "influxdb"}
    assert set(services["grafana"]["depends_on"]) == {"influxdb"}


def test_the_broker_health_check_passes_against_the_compose_config(
    tmp_path: Path, compose_fleet: tuple[Path, Login]
) -> None:
    if not shutil.which("mosquitto_sub"):
        missing("mosquitto_sub not found: apt-get install mosquitto-clients")
    fleet, _ = compose_fleet
    test = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]["mosquitto"][
        "healthcheck"
    ]["test"]
    assert test[0] == "CMD-SHELL"
    server = ComposeMosquitto(tmp_path / "compose", fleet)
    server.start()
    # compose un-escapes $$; the container's paths and port become the test broker's
    shell = test[1].replace("$$", "$").replace("/mosquitto/fleet/", f"{fleet}/")
    shell = shell.replace("-p 8883", f"-p {server.port}")
    try:
        assert subprocess.run(["sh", "-c", shell], timeout=10).returncode == 0
    finally:
        server.stop()
    assert subprocess.run(["sh", "-c", shell], timeout=10).returncode != 0  # the broker is gone
