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


async def test_a_triggered_jobs_model_goes_to_the_group_once_it_passes_the_gate(
    mosquitto: Any, make_config: Callable[..., HubConfig]
) -> None:
    """``auto_deploy = "group"``: the model of a triggered job reaches the groups that drive its name
    once its smoke test is in and the gate passes; a worse one is refused with the reasons; a job a
    person asked for is left to them."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from schemas.messages import JobResult, ModelRef, TrainParams
    from schemas.mqtt_url import BrokerUrl

    mlops = {"gate": True, "gate_smoke_test": True, "auto_deploy": "group", "auto_deploy_smoke_wait_s": 2}
    async with (
        HubService(make_config(mosquitto.url, mlops=mlops)) as hub,
        httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http,
    ):
        steady = {"completion_pct": 100.0, "best_lap_time_s": 10.0, "off_track_count": 0}
        v1, good, bad, asked = [await register(http, {"metrics": steady}) for _ in range(4)]
        hub.catalog.add_evaluation("pilot", bad, "evaluate-1", {"completion_pct": 40.0}, {})
        for version in (v1, good, asked):
            r = await http.post(f"/models/pilot/{version}/smoke-tests", json={"passed": True}, headers=AUTH)
            assert r.status_code in (200, 201), r.text
        body = {"model": {"name": "pilot", "version": v1}, "group": "fleet"}
        assert (await http.post("/deployments", json=body, headers=AUTH)).status_code == 201

        params = TrainParams(model_name="pilot").model_dump(mode="json")
        jobs = {}
        for version, why in ((good, "mlops: test trigger"), (bad, "mlops: test trigger"), (asked, "alice")):
            jobs[version] = f"train-{version}"
            hub.catalog.create_job(jobs[version], "train", {"params": params, "requested_by": why})
        url = BrokerUrl.parse(mosquitto.url)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.connect(url.host, url.port)
        client.loop_start()
        try:
            for version, job in jobs.items():
                result = JobResult(
                    job=job,
                    kind="train",
                    status="succeeded",
                    ts=0,
                    model=ModelRef(name="pilot", version=version),
                )
                topic = hub.topics.job_result("train", job)
                client.publish(topic, result.to_json(), qos=1).wait_for_publish(10)

            async def decided() -> list[Any]:
                rows = (await http.get("/releases")).json()
                return rows if len(rows) == 2 and all(r["state"] != "waiting" for r in rows) else []

            releases = {r["model"]: r for r in await poll(decided, "both releases decided")}
        finally:
            client.loop_stop()
            client.disconnect()
        assert set(releases) == {f"pilot:{good}", f"pilot:{bad}"}  # not the one alice asked for
        assert releases[f"pilot:{good}"]["state"] == "deployed" and releases[f"pilot:{good}"]["groups"] == [
            "fleet"
        ]
        refused = releases[f"pilot:{bad}"]
        assert refused["state"] == "refused" and refused["smoke_test"] is None
        assert "completion 40.0% < current 100.0%" in refused["reasons"][0]
        assert "no car-side smoke test" in refused["reasons"][0]
        current = (await http.get("/deployments/group/fleet")).json()["current"]
        assert current["version"] == good
