"""``paddock hub smoke-test`` runs the car's own smoke test on a registered model and records it;
with ``gate_smoke_test`` the evaluation gate refuses a model that failed it (or was never tested)."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from deploy.cli import app
from tests.edge.modelkit import card, onnx_model
from tests.trainer.hub_thread import HubThread

runner = CliRunner()


@pytest.fixture
def hub(mosquitto: Any, tmp_path: Path) -> Iterator[HubThread]:
    with HubThread(mosquitto.url, tmp_path / "hub", mlops={"gate": True, "gate_smoke_test": True}) as h:
        yield h


def paddock(hub: HubThread, *args: str) -> Any:
    return runner.invoke(app, ["hub", *args, "--hub", hub.url], env={"PADDOCK_TOKEN": hub.token})


def register(hub: HubThread, model: bytes) -> str:
    lineage = json.dumps({"metrics": {"completion_pct": 100.0, "best_lap_time_s": 10.0}})
    r = httpx.post(
        f"{hub.url}/models",
        data={"name": "pilot", "card": card().model_dump_json(), "lineage": lineage},
        files={"artifact": ("pilot.onnx", model)},
        headers={"Authorization": f"Bearer {hub.token}"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["version"])


def deploy(hub: HubThread, version: str) -> httpx.Response:
    body = {"model": {"name": "pilot", "version": version}, "car": "car-a"}
    return httpx.post(f"{hub.url}/deployments", json=body, headers={"Authorization": f"Bearer {hub.token}"})


def test_the_gate_needs_a_passing_smoke_test_of_the_cars_runtime(hub: HubThread) -> None:
    good, broken, untested = (
        register(hub, onnx_model()),
        register(hub, onnx_model(nan=True)),
        register(hub, onnx_model(steering=0.1)),
    )

    done = paddock(hub, "smoke-test", f"pilot:{good}")
    assert done.exit_code == 0 and f"pilot:{good} passes the car's smoke test" in done.output, done.output
    failed = paddock(hub, "smoke-test", f"pilot:{broken}")
    assert failed.exit_code == 1 and "not finite" in failed.output, failed.output

    r = deploy(hub, broken)
    assert r.status_code == 409, r.text
    gate = r.json()["detail"]["gate"]
    assert gate["reasons"] == [f"the car's smoke test failed: {gate['smoke_test']['reason']}"]
    assert "not finite" in gate["smoke_test"]["reason"]
    r = deploy(hub, untested)
    assert r.status_code == 409 and "no car-side smoke test" in r.text
    r = deploy(hub, good)
    assert r.status_code == 201, r.text
    assert r.json()["gate"]["smoke_test"]["passed"] and r.json()["gate"]["smoke_test"]["latency_ms"] > 0
    assert json.loads(paddock(hub, "canaries", "--json").output) == []
    assert paddock(hub, "smoke-test", "pilot").exit_code == 2
