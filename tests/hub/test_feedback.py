"""Feedback frames (human takeovers, a teacher disagreeing with the model) gathered into the feedback
dataset on a real hub, and the retraining triggers on feedback volume, degradation and a schedule."""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub import HubConfig, HubService
from hub.config import MlopsConfig
from hub.mlops.triggers import RetrainPolicy
from hub.storage.catalog import Catalog
from hub.telemetry.metrics import ModelHealthRow
from schemas.messages import TrainJob, TrainParams
from tests.hub.conftest import TOKEN, read_session
from tests.hub.fakecar import FakeCar
from tests.hub.test_mlops_gate import register

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def hub(mosquitto: Any, make_config: Callable[..., HubConfig]) -> AsyncIterator[HubService]:
    mlops = {"feedback_frames": 30, "feedback_scan_s": 3600, "retrain_on_feedback_frames": 35}
    async with HubService(make_config(mosquitto.url, mlops=mlops)) as h:
        yield h


def drive(car: FakeCar, session: str) -> None:
    """20 frames on the model, a human takeover of 40 frames, then 20 on the model again of which
    the first 10 the recorded teacher would have steered otherwise."""
    car.start_recording(session)
    for _ in range(20):
        car.frame(session, mode="autopilot", model="pilot:1", steering=0.1)
    for _ in range(40):
        car.frame(session, mode="manual", model="pilot:1", steering=0.5, throttle=0.3)
    for i in range(20):
        label = {"steering": 0.7 if i < 10 else 0.05, "throttle": 0.4}
        car.frame(session, mode="autopilot", model="pilot:1", steering=0.0, label=label)
    car.stop_recording(session, frames=80)


async def test_takeovers_and_disagreements_become_the_feedback_dataset_and_a_train_job(
    hub: HubService,
) -> None:
    hub.catalog.create_dataset("laps", {"name": "laps", "train": [], "val": []})
    async with httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
        await register(http, {"dataset": "laps"})
        car = FakeCar(hub.config.mqtt.url, "car-3", prefix=hub.config.topic_prefix).connect()
        try:
            await asyncio.to_thread(drive, car, "s1")
            await hub.wait_sealed("car-3", "s1", timeout=20)
        finally:
            car.close()
        assert (await http.get("/feedback")).json()["train"] == []
        r = await http.post("/feedback/collect", headers=AUTH)
        assert r.status_code == 200, r.text
        found = r.json()
        assert found["frames"] == {"pilot:1": 40} and len(found["jobs"]) == 1
        assert (await http.post("/feedback/collect", headers=AUTH)).json()["frames"] == {}

        dataset = (await http.get("/feedback")).json()
        assert dataset["train"] == [{"car": "car-3", "session": "s1-feedback"}]
        session = (await http.get("/sessions/car-3/s1-feedback")).json()
        assert session["frame_count"] == 40, session
    _, samples = read_session(hub.config.data_dir / "store", "car-3", "s1-feedback")
    takeover, disagreed = samples[:30], samples[30:]
    assert [s.seq for s in takeover] == list(range(20, 50))  # the first 30 manual frames
    assert all(s.record["label"] == {"steering": 0.5, "throttle": 0.3} for s in takeover)
    assert {s.record["feedback"] for s in takeover} == {"human takeover"}
    assert [s.seq for s in disagreed] == list(range(60, 70))
    assert {s.record["feedback"] for s in disagreed} == {"teacher disagreed by 0.70"}

    [job] = hub.catalog.list_jobs("train")
    request = TrainJob.from_dict(job["request"])
    assert request.requested_by == "mlops: 40 new feedback frames on pilot:1 (>= 35)"
    assert request.params.dataset == "laps-with-feedback"
    trained_on = hub.catalog.get_dataset("laps-with-feedback")
    assert trained_on is not None and {"car": "car-3", "session": "s1-feedback"} in trained_on["train"]


def row(car: str, degraded: bool) -> ModelHealthRow:
    return ModelHealthRow(
        car=car,
        model="pilot:1",
        telemetry_age_s=0.0,
        interventions_per_min=3.0 if degraded else 0.0,
        off_track_per_min=0.5,
        lap_time_s=None,
        inference_ms=None,
        confidence=None,
        loop_late_p99_ms=None,
        drift_score=None,
        drifted=False,
        degraded=degraded,
    )


def test_degradation_and_schedule_triggers_say_why(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    card = {"architecture": "x", "input": {"width": 8, "height": 8}, "outputs": [{"name": "steering"}]}
    catalog.add_model(
        {
            "name": "pilot",
            "version": "1",
            "sha256": "0" * 64,
            "size": 1,
            "format": "onnx",
            "card": card,
            "lineage": {"dataset": "laps"},
            "artifact_key": "models/pilot/1/model.onnx",
            "created": 0.0,
        }
    )
    asked: list[tuple[TrainParams, str]] = []

    def request(params: TrainParams, why: str) -> dict[str, Any]:
        asked.append((params, why))
        return {"id": f"train-{len(asked)}"}

    cfg = MlopsConfig(retrain_on_degradation=True, retrain_every_s=60, retrain_cooldown_s=0)
    policy = RetrainPolicy(cfg, catalog, request)
    assert policy.on_health([row("car-1", degraded=False)]) == []
    assert len(policy.on_health([row("car-1", degraded=True)])) == 1
    assert asked[-1][1] == "mlops: pilot:1 degraded on car-1: interventions 3.00/min, off-track 0.50/min"
    assert asked[-1][0].dataset == "laps"
    assert policy.on_schedule({"pilot:1"}, now=1000.0) == []  # the first period starts now
    assert policy.on_schedule({"pilot:1"}, now=1059.0) == []
    assert len(policy.on_schedule({"pilot:1"}, now=1060.0)) == 1
    assert asked[-1][1] == "mlops: schedule, pilot:1 every 60 s"
    catalog.close()
