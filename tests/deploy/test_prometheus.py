"""deploy/prometheus/: the scrape config and alert rules pass promtool, every alert fires in its unit
test, and every metric the rules name is one the hub exports."""

import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from deploy.fleet.tls import load_or_make_ca
from hub.mlops.canary import Canary, CanaryCollector
from hub.telemetry.metrics import FleetCollector, HubCollector, HubGauges, IngestCounters, ModelHealthRow
from hub.telemetry.sinks import SinkWorker, SqliteSink
from tests.missing import missing

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        missing("promtool not found: apt-get install prometheus (script/setup dev installs it)")
    return subprocess.run([tool, *args], cwd=PROM, capture_output=True, text=True, timeout=60)


def alert_names() -> list[str]:
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_config_which_scrapes_with_a_read_token(tmp_path: Path) -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "paddock-hub"]
    auth = job["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"] == "/run/secrets/prometheus-token"
    # the hub serves HTTPS: Prometheus verifies it with the fleet's CA, for the hub's compose name
    assert job["scheme"] == "https" and job["tls_config"]["server_name"] == "hub"
    load_or_make_ca(tmp_path / "tls")
    job["tls_config"]["ca_file"] = str(tmp_path / "tls" / "ca.crt")
    # promtool checks that the token file exists: the same config with a token file of the test's
    token = tmp_path / "hub-read-token"
    token.write_text("0123456789abcdef\n")
    auth["credentials_file"] = str(token)
    config["rule_files"] = [str(PROM / "alerts.yml")]
    [cars] = [j for j in config["scrape_configs"] if j["job_name"] == "paddock-cars"]
    assert cars["file_sd_configs"] == [{"files": ["cars/*.yml"]}]
    cars["file_sd_configs"] = [{"files": [str(PROM / "cars" / "*.yml")]}]  # promtool reads these too
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    token.unlink()
    done = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode != 0 and "hub-read-token" in done.stdout + done.stderr


def test_promtool_checks_the_cars_target_files(tmp_path: Path) -> None:
    """The cars job's target files are checked by promtool: a listed car passes, a malformed one fails."""
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    config["scrape_configs"] = [j for j in config["scrape_configs"] if j["job_name"] == "paddock-cars"]
    config["rule_files"] = []
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "cars").mkdir()
    cars = tmp_path / "cars" / "fleet.yml"
    cars.write_text(yaml.safe_dump([{"targets": ["car-1.local:9110"], "labels": {"group": "fleet"}}]))
    done = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    cars.write_text("- targets: car-1.local:9110\n")
    done = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode != 0 and "SD file" in done.stdout + done.stderr


def test_every_alert_fires_in_its_unit_test() -> None:
    done = promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    tested = yaml.safe_load((PROM / "alerts_test.yml").read_text())
    fired = {
        case["alertname"]
        for test in tested["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert set(alert_names()) == fired
    assert {
        "PaddockCarOffline",
        "PaddockLoopLate",
        "PaddockIngestFramesLost",
        "PaddockModelDrift",
        "PaddockModelDegraded",
        "PaddockCanaryRolledBack",
    } <= fired


def test_the_rules_name_metrics_the_hub_exports(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    gauges = HubGauges(0, 0.0, 0, 0, 0, True, 0, 0)
    counters = IngestCounters()
    counters.car("car-1").frames_received = 1
    sink = SinkWorker(
        SqliteSink(tmp_path / "telemetry.db"), queue_size=10, batch_size=10, flush_interval_s=1, retry_max_s=1
    )
    registry.register(HubCollector(counters, [sink], lambda: gauges))
    row = ModelHealthRow("car-1", "pilot:1", 1.0, 0.0, 0.0, 10.0, 2.0, None, 0.5, 0.01, False, False)
    registry.register(FleetCollector(lambda: [row], 0.25))
    canary = Canary(
        id="c", group="fleet", model="p:2", baseline="p:1", cars=["car-1"], others=[], started=0, window_s=1
    )
    registry.register(CanaryCollector(lambda: [canary, canary.model_copy(update={"state": "rolled_back"})]))
    exported = set(re.findall(r"^(paddock_\w+?)(?:\{| )", generate_latest(registry).decode(), re.M))
    used = set(re.findall(r"paddock_(?:hub|fleet|canary)_\w+", (PROM / "alerts.yml").read_text()))
    assert used and used <= exported, used - exported
