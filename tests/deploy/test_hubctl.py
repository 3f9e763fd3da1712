"""``paddock hub cars|models|deploy|rollback|jobs|estop`` against a real hub (and Mosquitto)."""

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
    with HubThread(mosquitto.url, tmp_path / "hub") as h:
        yield h


def paddock(hub: HubThread, *args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, ["hub", *args, "--hub", hub.url], env={"PADDOCK_TOKEN": "", **(env or {})})


def test_reads_deploy_and_rollback_through_the_api(hub: HubThread, tmp_path: Path) -> None:
    for version in ("1", "2"):
        r = httpx.post(
            f"{hub.url}/models",
            data={"name": "pilot", "version": version, "card": card().model_dump_json()},
            files={"artifact": ("pilot.onnx", onnx_model())},
            headers={"Authorization": f"Bearer {hub.token}"},
        )
        assert r.status_code == 201, r.text
    result = paddock(hub, "models", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(m["version"] for m in json.loads(result.output)) == ["1", "2"]
    assert "pilot" in paddock(hub, "models").output

    refused = paddock(hub, "deploy", "pilot:1", "--car", "car-a")
    assert refused.exit_code == 2 and "401" in refused.output and "PADDOCK_TOKEN" in refused.output

    token_file = tmp_path / "token"
    token_file.write_text(hub.token + "\n")
    for version in ("1", "2"):
        done = paddock(hub, "deploy", f"pilot:{version}", "--car", "car-a", "--token-file", str(token_file))
        assert done.exit_code == 0, done.output
        assert f"deployed pilot:{version} to car car-a" in done.output
    back = paddock(hub, "rollback", "--car", "car-a", env={"PADDOCK_TOKEN": hub.token})
    assert back.exit_code == 0 and "car car-a now runs pilot:1" in back.output, back.output
    assert hub.get("/deployments/car/car-a")["current"] == {"name": "pilot", "version": "1"}
    again = paddock(hub, "rollback", "--car", "car-a", env={"PADDOCK_TOKEN": hub.token})
    assert again.exit_code == 2 and "409" in again.output

    assert paddock(hub, "estop", "on", "--token", hub.token).exit_code == 0
    assert hub.get("/fleet/estop")["active"] is True
    for args in (["cars"], ["sessions"], ["datasets"], ["jobs"]):
        assert paddock(hub, *args, "--json").exit_code == 0


def test_bad_input_is_one_line_and_exit_2(hub: HubThread) -> None:
    for args in (["deploy", "pilot", "--car", "a"], ["rollback"], ["estop", "maybe"]):
        result = paddock(hub, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
    unreachable = runner.invoke(app, ["hub", "cars", "--hub", "http://127.0.0.1:9"])
    assert unreachable.exit_code == 2 and "cannot reach the hub" in unreachable.output


def test_a_classifier_deploys_to_the_detector_slot_and_rolls_back_alone(hub: HubThread) -> None:
    from schemas.model_card import ClassesSpec, InputSpec, ModelCard

    classifier = ModelCard(
        architecture="x",
        kind="classifier",
        input=InputSpec(width=160, height=120),
        classes=[ClassesSpec(name="obstacle", classes=["none", "box"])],
    )
    for version in ("1", "2"):
        r = httpx.post(
            f"{hub.url}/models",
            data={"name": "detector", "version": version, "card": classifier.model_dump_json()},
            files={"artifact": ("detector.onnx", onnx_model(throttle=0.1 * int(version)))},
            headers={"Authorization": f"Bearer {hub.token}"},
        )
        assert r.status_code == 201, r.text
    env = {"PADDOCK_TOKEN": hub.token}
    for version in ("1", "2"):
        done = paddock(hub, "deploy", f"detector:{version}", "--car", "car-a", env=env)
        assert done.exit_code == 0 and f"deployed detector:{version} to car car-a (detector)" in done.output
    assert paddock(hub, "rollback", "--car", "car-a", env=env).exit_code == 2  # the pilot has none
    back = paddock(hub, "rollback", "--car", "car-a", "--detector", env=env)
    assert back.exit_code == 0 and "now runs detector:1 as its detector" in back.output, back.output
    assert hub.get("/deployments/car/car-a?slot=detector")["current"] == {"name": "detector", "version": "1"}
