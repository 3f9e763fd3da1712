"""The evaluation gate on deployments and the drift-triggered retraining, on a real hub."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from hub import HubConfig, HubService
from schemas.messages import TrainJob
from schemas.model_card import InputSpec, ModelCard, OutputSpec
from tests.hub.conftest import TOKEN
from tests.hub.fakecar import FakeCar
from tests.hub.test_mlops import poll, sim

AUTH = {"Authorization": f"Bearer {TOKEN}"}
__all__ = ["sim"]  # the module fixture of the drift tests


def card(**fields: Any) -> str:
    spec = InputSpec(width=8, height=8)
    return ModelCard(
        architecture="x", input=spec, outputs=[OutputSpec(name="steering")], **fields
    ).model_dump_json()


async def register(http: httpx.AsyncClient, lineage: dict[str, Any], **card_fields: Any) -> str:
    form = {"name": "pilot", "card": card(**card_fields), "lineage": json.dumps(lineage)}
    r = await http.post("/models", data=form, files={"artifact": ("m.onnx", b"\x08\x01" * 100)}, headers=AUTH)
    assert r.status_code == 201, r.text
    return str(r.json()["version"])


async def deploy(http: httpx.AsyncClient, version: str, force: bool = False) -> httpx.Response:
    body = {"model": {"name": "pilot", "version": version}, "car": "car-1", "force": force}
    return await http.post("/deployments", json=body, headers=AUTH)


@pytest.fixture
async def hub(mosquitto: Any, make_config: Callable[..., HubConfig]) -> AsyncIterator[HubService]:
    mlops = {"gate": True, "drift_reports": 1, "retrain_on_drift": True, "retrain_evaluate_track": "oval"}
    async with HubService(make_config(mosquitto.url, mlops=mlops)) as h:
        yield h


@pytest.fixture
async def http(hub: HubService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hub.api_url, timeout=30) as client:
        yield client


async def test_the_gate_refuses_a_worse_candidate_unless_forced(
    hub: HubService, http: httpx.AsyncClient
) -> None:
    good = await register(http, {"metrics": {"completion_pct": 100.0, "best_lap_time_s": 10.0}})
    unevaluated = await register(http, {})
    better = await register(http, {"metrics": {"completion_pct": 100.0, "best_lap_time_s": 10.2}})
    bad = await register(http, {"metrics": {"completion_pct": 100.0, "best_lap_time_s": 9.0}})
    hub.catalog.add_evaluation("pilot", bad, "evaluate-1", {"completion_pct": 40.0, "off_track_count": 2}, {})

    r = await deploy(http, good)
    assert r.status_code == 201 and r.json()["gate"]["passed"], r.text
    r = await deploy(http, unevaluated)
    assert r.status_code == 409 and "no closed-loop evaluation" in r.text
    r = await deploy(http, better)  # within the 5 % lap-time tolerance
    assert r.status_code == 201 and r.json()["gate"]["current"]["best_lap_time_s"] == 10.0
    r = await deploy(http, bad)  # the newest evaluation wins over the training figures
    assert r.status_code == 409, r.text
    gate = r.json()["detail"]["gate"]
    assert gate["reasons"] == [
        "completion 40.0% < current 100.0%",
        "off track 2× > current 0×",
        "no completed lap, current 10.20 s",
    ]
    assert gate["candidate"]["source"] == "evaluation evaluate-1"
    assert (await http.get("/deployments/car/car-1")).json()["current"]["version"] == better
    r = await deploy(http, bad, force=True)
    assert r.status_code == 201 and r.json()["gate"]["forced"] and not r.json()["gate"]["passed"]
    records = [json.loads(hub.store.get(k)) for k in hub.store.list(f"models/pilot/{bad}/gate/")]
    assert sorted(d["forced"] for d in records) == [False, True]


async def test_drift_queues_a_train_job_that_says_why(
    hub: HubService, http: httpx.AsyncClient, sim: Any
) -> None:
    hub.catalog.create_dataset("laps", {"name": "laps", "train": [], "val": []})
    version = await register(http, {"dataset": "laps"}, input_stats=sim["train"])
    car = FakeCar(hub.config.mqtt.url, "car-2", prefix=hub.config.topic_prefix).connect()
    try:
        for stats in (sim["same"], sim["dim"], sim["dim"]):  # one drift, one job (cool-down)
            await asyncio.to_thread(
                car.telemetry, mode="autopilot", model=f"pilot:{version}", input_stats=stats
            )
            await asyncio.sleep(0.3)

        async def jobs() -> list[Any]:
            return hub.catalog.list_jobs("train")

        [job] = await poll(jobs, "a triggered train job")
    finally:
        car.close()
    request = TrainJob.from_dict(job["request"])
    assert request.params.dataset == "laps" and request.params.evaluate_track == "oval"
    assert (
        request.requested_by is not None
        and f"input drift on car-2, pilot:{version} PSI" in request.requested_by
    )
    await asyncio.sleep(0.5)
    assert len(hub.catalog.list_jobs("train")) == 1
