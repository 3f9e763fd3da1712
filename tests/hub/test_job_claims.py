"""Trainers report only on jobs they took: the first trainer to report on a job (on its own topic,
``jobs/{kind}/{job}/progress/{trainer}``, which the broker's ACL lets only it publish on) takes it;
the hub refuses another trainer's progress or result for that job, and counts the refusal."""

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from hub import HubConfig, HubService
from schemas.messages import JobProgress, JobResult
from tests.hub.conftest import TOKEN, eventually
from tests.hub.fakecar import FakeCar

AUTH = {"Authorization": f"Bearer {TOKEN}"}
REFUSED = "job: not the trainer that took the job"


@pytest.fixture
async def hub(mosquitto: Any, make_config: Callable[..., HubConfig]) -> AsyncIterator[HubService]:
    async with HubService(make_config(mosquitto.url)) as h:
        yield h


def refusals(hub: HubService) -> int:
    return hub.ingest_stats().malformed_by_reason.get(REFUSED, 0)


async def test_a_result_from_a_trainer_that_did_not_take_the_job_is_refused(hub: HubService) -> None:
    t = hub.topics
    job = "evaluate-claimed-1"
    client = FakeCar(hub.config.mqtt.url, "trainers", prefix=hub.config.topic_prefix).connect(birth=False)
    running = JobProgress(job=job, kind="evaluate", state="running", stage="sim", ts=time.time())
    client.publish(t.job_progress("evaluate", job, "gpu-1"), running.to_json())
    taken = await eventually(lambda: (j := hub.catalog.get_job(job)) and j["trainer"] == "gpu-1" and j)
    assert taken["state"] == "running"
    fake = JobResult(job=job, kind="evaluate", status="succeeded", metrics={"laps": 99.0}, ts=time.time())
    client.publish(t.job_result("evaluate", job, "gpu-2"), fake.to_json())  # another trainer
    client.publish(t.job_result("evaluate", job), fake.to_json())  # no trainer at all
    await eventually(lambda: refusals(hub) == 2, what="two refusals counted")
    job_now = hub.catalog.get_job(job)
    assert job_now is not None and job_now["result"] is None and job_now["state"] == "running"
    real = JobResult(job=job, kind="evaluate", status="succeeded", metrics={"laps": 3.0}, ts=time.time())
    client.publish(t.job_result("evaluate", job, "gpu-1"), real.to_json())
    done = await eventually(lambda: (j := hub.catalog.get_job(job)) and j["state"] == "succeeded" and j)
    assert done["result"]["metrics"] == {"laps": 3.0} and refusals(hub) == 2
    async with httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
        shown = (await http.get(f"/jobs/{job}", headers=AUTH)).json()
        assert shown["trainer"] == "gpu-1"
        ingest = (await http.get("/ingest", headers=AUTH)).json()
        assert ingest["malformed_by_reason"][REFUSED] == 2
