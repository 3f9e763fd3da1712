"""The Prometheus dashboards (deploy/grafana/dashboards/prometheus/): every expression is PromQL that
promtool parses and names only metrics a live hub's /metrics exports, so renaming a metric on the
hub fails here; the panels cover drift, degradation, the models' figures, canaries and feedback."""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schemas.dataset import DatasetManifest
from schemas.messages import SessionRef
from tests.deploy.test_prometheus import promtool
from tests.hub.conftest import wait_until
from tests.hub.fakecar import FakeCar
from tests.trainer.hub_thread import HubThread

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
BOARDS = sorted((GRAFANA / "dashboards" / "prometheus").glob("*.json"))
METRIC = re.compile(r"\bpaddock_[a-z0-9_]+\b")


def expressions() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target."""
    for path in BOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for t in panel.get("targets", []):
                yield f"{path.name} {panel['title']!r} {t['refId']}", t["expr"]


def variable_queries() -> Iterator[tuple[str, str]]:
    for path in BOARDS:
        for var in json.loads(path.read_text())["templating"]["list"]:
            if var["type"] == "query":
                yield f"{path.name} variable {var['name']}", var["query"]["query"]


def as_promql(expr: str) -> str:
    """What Grafana sends: its variables replaced (multi-value ones as a regex)."""
    return re.sub(r"\$(car|model|group)\b", ".*", expr).replace("$__rate_interval", "1m")


@pytest.fixture(scope="module")
def metrics(mosquitto: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A live hub's /metrics, with one recorded session of 7 frames in its feedback dataset."""
    with HubThread(mosquitto.url, tmp_path_factory.mktemp("hub")) as hub:
        assert hub.service is not None
        car = FakeCar(mosquitto.url, "car-f", prefix=hub.config.topic_prefix).connect()
        car.start_recording("s0")
        car.record("s0", 7)
        car.stop_recording("s0", frames=7)
        sealed = lambda: (hub.service.catalog.get_session("car-f", "s0") or {}).get("state") == "sealed"  # noqa: E731
        wait_until(sealed, timeout=30, what="the session sealed")
        car.close()
        ref = SessionRef(car="car-f", session="s0")
        hub.service.feedback.save_dataset(DatasetManifest(name="feedback", train=[ref]))
        return httpx.get(f"{hub.url}/metrics", timeout=30).text


@pytest.fixture(scope="module")
def exported(metrics: str) -> set[str]:
    """The metric names the hub exports (its families, counters with ``_total``)."""
    return set(re.findall(r"^# TYPE (\S+) ", metrics, re.M))


def test_the_feedback_gauges_count_the_feedback_datasets_frames(metrics: str) -> None:
    assert re.search(r"^paddock_feedback_sessions 1\.0$", metrics, re.M)
    assert re.search(r"^paddock_feedback_frames 7\.0$", metrics, re.M)


def test_the_boards_are_provisioned_with_the_prometheus_datasource() -> None:
    (ds,) = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    assert [p.name for p in BOARDS] == ["mlops.json"]
    for path in BOARDS:
        board = json.loads(path.read_text())
        (wanted,) = board["__inputs"]
        assert wanted["pluginId"] == "prometheus" and ds["uid"] not in path.read_text()
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
                assert panel["targets"] and panel.get("description"), panel["title"]


def test_every_expression_names_metrics_the_hub_exports(exported: set[str]) -> None:
    used: dict[str, set[str]] = {}
    for where, expr in [*expressions(), *variable_queries()]:
        names = set(METRIC.findall(expr))
        assert names, f"{where}: no paddock metric in {expr!r}"
        unknown = names - exported
        assert not unknown, f"{where}: the hub exports no {sorted(unknown)}"
        for name in names:
            used.setdefault(name, set()).add(where)
    for wanted in (
        "paddock_fleet_drift_score",
        "paddock_fleet_drift_threshold",
        "paddock_fleet_drifted",
        "paddock_fleet_degraded",
        "paddock_fleet_interventions_per_minute",
        "paddock_fleet_off_track_per_minute",
        "paddock_fleet_lap_time_seconds",
        "paddock_fleet_inference_ms",
        "paddock_canary_running",
        "paddock_canary_decisions_total",
        "paddock_feedback_frames",
    ):
        assert wanted in used, f"no panel shows {wanted}"


def test_every_expression_is_promql(tmp_path: Path) -> None:
    """promtool parses each one, as a recording rule (Grafana's variables substituted)."""
    rules = [
        {"record": f"paddock:dashboard_{i}", "expr": as_promql(e)} for i, (_, e) in enumerate(expressions())
    ]
    assert len(rules) >= 15
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
