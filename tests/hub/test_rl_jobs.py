"""`POST /jobs` with kind `rl`: validated, recorded, published on jobs/rl for the trainer agent."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest

from hub import HubConfig, HubService
from schemas.messages import RlJob, parse_job
from schemas.mqtt_url import BrokerUrl
from tests.hub.conftest import TOKEN, eventually

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PARAMS = {
    "model_metadata": {"action_space": [{"steering_angle": 0, "speed": 1.0}]},
    "reward_function": "def reward_function(params):\n    return 1.0\n",
    "track": "oval",
    "minutes": 2,
}


@pytest.fixture
async def hub(mosquitto: Any, make_config: Callable[..., HubConfig]) -> AsyncIterator[HubService]:
    async with HubService(make_config(mosquitto.url)) as h:
        yield h


async def test_rl_jobs_are_published_for_trainers(hub: HubService) -> None:
    url = BrokerUrl.parse(hub.config.mqtt.url)
    received: list[bytes] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.on_message = lambda _c, _u, msg: received.append(msg.payload)
    client.connect(url.host, url.port)
    client.subscribe(hub.topics.job_request("rl"), qos=1)
    client.loop_start()
    try:
        async with httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
            r = await http.post("/jobs", json={"kind": "rl", "job": "rl-a", "params": PARAMS}, headers=AUTH)
            assert r.status_code == 201, r.text
            assert r.json()["kind"] == "rl"
            await eventually(lambda: received, what="the rl job on jobs/rl")
            job = parse_job(received[0])
            assert isinstance(job, RlJob) and job.job == "rl-a" and job.params.minutes == 2
            clone = PARAMS | {"clone": {"name": "nosuch", "version": "1"}}
            r = await http.post("/jobs", json={"kind": "rl", "params": clone}, headers=AUTH)
            assert r.status_code == 422 and "unknown model nosuch:1 to clone" in r.json()["detail"]
            listed = (await http.get("/jobs", params={"kind": "rl"})).json()
            assert [j["job"] for j in listed] == ["rl-a"]
    finally:
        client.loop_stop()
        client.disconnect()
