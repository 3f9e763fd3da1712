"""``paddock hub pipeline`` (deploy/pipeline.py, the steps the Airflow DAG runs) against a real hub,
Mosquitto and a trainer agent: recorded sessions become a dataset, a model trained and evaluated
in the simulator, and a deployment; the gate refuses the same candidate where the car already runs
a better model, and a step run again resumes the run instead of starting it twice."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from deploy.cli import app
from tests.edge.modelkit import card, onnx_model
from tests.hub.conftest import wait_until
from tests.hub.fakecar import FakeCar, make_jpeg
from tests.trainer.hub_thread import HubThread
from trainer.agent import AgentSettings, TrainerAgent

runner = CliRunner()
MLOPS = {"gate": True, "gate_smoke_test": True, "gate_min_completion_pct": 0}


@pytest.fixture
def fleet(mosquitto: Any, tmp_path: Path) -> Iterator[HubThread]:
    """The hub (gate and smoke test on), a trainer agent on its topics, two recorded sessions."""
    with HubThread(mosquitto.url, tmp_path / "hub", mlops=MLOPS) as hub:
        assert hub.service is not None
        settings = AgentSettings(
            store=hub.config.store_url,
            work_dir=str(tmp_path / "agent"),
            broker=mosquitto.url,
            topic_prefix=hub.config.topic_prefix,
            hub=hub.url,
            hub_token=hub.token,
            export_formats=["onnx"],
            client_id=f"trainer-test-{uuid.uuid4().hex[:8]}",
            job_timeout_s=300,
        )
        agent = TrainerAgent(settings).start()
        assert agent.subscribed.wait(10)
        car = FakeCar(mosquitto.url, "car-a", prefix=hub.config.topic_prefix, jpeg=make_jpeg(3000)).connect()
        try:
            for session in ("s0", "s1"):
                car.start_recording(session)
                car.record(session, 40)
                car.stop_recording(session, frames=40)
            wait_until(lambda: _sealed(hub) == 2, timeout=60, what="two sealed sessions")
            yield hub
        finally:
            car.close()
            agent.stop()


def _sealed(hub: HubThread) -> int:
    return sum(s["state"] == "sealed" for s in hub.get("/sessions?car=car-a")["sessions"])


def pipeline(hub: HubThread, *args: str) -> Any:
    return runner.invoke(app, ["hub", "pipeline", "--hub", hub.url, *args], env={"PADDOCK_TOKEN": hub.token})


def common(run: str) -> list[str]:
    sets = [
        "min_frames=50",
        "evaluate_options.video=false",
        "poll_s=0.2",
        "train_options.threads=1",
        "train_options.batch_size=16",
        "train_options.model.width=64",
        "train_options.model.height=32",
    ]
    return ["--run", run, "--epochs", "1", "--laps", "1", *(f"--set={s}" for s in sets)]


def register_better(hub: HubThread) -> str:
    """A model with perfect figures, already on car-b: no candidate of this run beats it."""
    lineage = json.dumps({"metrics": {"completion_pct": 100.0, "best_lap_time_s": 5.0, "off_track_count": 0}})
    auth = {"Authorization": f"Bearer {hub.token}"}
    r = httpx.post(
        f"{hub.url}/models",
        data={"name": "pilot", "card": card().model_dump_json(), "lineage": lineage},
        files={"artifact": ("m.onnx", onnx_model())},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    version = str(r.json()["version"])
    body = {"model": {"name": "pilot", "version": version}, "car": "car-b", "force": True}
    assert httpx.post(f"{hub.url}/deployments", json=body, headers=auth).status_code == 201
    return version


@pytest.mark.slow
def test_the_pipeline_deploys_a_candidate_and_the_gate_refuses_a_worse_one(fleet: HubThread) -> None:
    hub = fleet
    done = pipeline(hub, *common("manual__2026-12-01T10:00:00+00:00"), "--car", "car-a", "--json")
    assert done.exit_code == 0, done.output
    steps = json.loads(done.stdout)["steps"]
    assert list(steps) == ["collect", "validate", "train", "evaluate", "gate", "deploy"]
    dataset = steps["collect"]["dataset"]
    assert dataset.startswith("pipeline-manual__2026-12-01T10-00-00") and len(dataset) <= 64
    assert (steps["collect"]["train"], steps["collect"]["val"]) == (1, 1)
    assert steps["validate"]["train_frames"] + steps["validate"]["val_frames"] == 80
    candidate = steps["train"]["model"]
    name, version = candidate.split(":")
    model = hub.get(f"/models/{name}/{version}")
    assert model["lineage"]["dataset"] == dataset and model["lineage"]["job"] == steps["train"]["job"]
    evaluation = [e for e in model["evaluations"] if e["job"] == steps["evaluate"]["job"]]
    assert evaluation and evaluation[0]["metrics"]["completion_pct"] == steps["evaluate"]["completion_pct"]
    assert steps["gate"]["smoke_test"]["passed"] and steps["gate"]["gate"]["passed"]
    assert steps["deploy"]["new"] and steps["deploy"]["gate"]["passed"]
    assert hub.get("/deployments/car/car-a")["current"] == {"name": name, "version": version}

    # The same run again: every step finds its work done on the hub; nothing is queued twice.
    jobs = len(hub.get("/jobs"))
    again = pipeline(hub, *common("manual__2026-12-01T10:00:00+00:00"), "--car", "car-a", "--json")
    assert again.exit_code == 0, again.output
    steps = json.loads(again.stdout)["steps"]
    assert not steps["collect"]["new"] and not steps["deploy"]["new"] and steps["train"]["model"] == candidate
    assert len(hub.get("/jobs")) == jobs

    # car-b runs a better model: the gate step refuses this candidate with the figures.
    better = register_better(hub)
    refused = pipeline(
        hub,
        *common("manual__2026-12-01T10:00:00+00:00"),
        "--car",
        "car-b",
        "--step",
        "gate",
        "--step",
        "deploy",
    )
    assert refused.exit_code == 1, refused.output
    assert f"the gate refuses {candidate} for car car-b" in refused.output
    assert "< current 100.0%" in refused.output
    assert hub.get("/deployments/car/car-b")["current"] == {"name": "pilot", "version": better}
    # deploy alone meets the hub's own gate; --force goes past it, and that is recorded.
    alone = pipeline(hub, *common("manual__2026-12-01T10:00:00+00:00"), "--car", "car-b", "--step", "deploy")
    assert alone.exit_code == 1 and "the gate refuses" in alone.output, alone.output
    forced = pipeline(
        hub,
        *common("manual__2026-12-01T10:00:00+00:00"),
        "--car",
        "car-b",
        "--step",
        "deploy",
        "--force",
        "--json",
    )
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["steps"]["deploy"]["gate"]["forced"]


@pytest.fixture
def hub(mosquitto: Any, tmp_path: Path) -> Iterator[HubThread]:
    with HubThread(mosquitto.url, tmp_path / "hub", mlops=MLOPS) as h:
        yield h


def test_bad_input_is_one_line_and_exit_code_2(hub: HubThread) -> None:
    for args, message in (
        (["--step", "launch"], "unknown step 'launch'"),
        (["--car", "car-a", "--group", "g"], "at most one of car and group"),
        (["--set", "laps=0"], "laps"),
        (["--run", "r1", "--step", "gate"], "the target"),
    ):
        r = pipeline(hub, *args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output
    r = pipeline(hub, "--run", "never-trained", "--step", "evaluate")
    assert r.exit_code == 1 and "has no trained model" in r.output
