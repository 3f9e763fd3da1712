"""Hypothesis over every topic the hub subscribes to (and some near misses): whatever arrives, the hub
stays healthy, counts what it refused, and still records a real car's frames afterwards."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from paho.mqtt.enums import CallbackAPIVersion

from tests.fuzzing import hub_messages
from tests.hub.fakecar import FakeCar
from tests.trainer.hub_thread import HubThread

SENT = {"messages": 0}


@pytest.fixture(scope="module")
def fuzzed_hub(mosquitto: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubThread, Any]]:
    with HubThread(mosquitto.url, tmp_path_factory.mktemp("fuzz-hub")) as hub:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="fuzzer-hub")
        client.connect("127.0.0.1", mosquitto.port)
        client.loop_start()
        yield hub, client
        client.loop_stop()
        client.disconnect()


def _healthy(hub: HubThread) -> None:
    r = httpx.get(f"{hub.url}/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text


SLOW = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW)
@given(data=hub_messages("ROOT"))
def test_the_hub_survives_hostile_messages(
    fuzzed_hub: tuple[HubThread, Any], data: tuple[str, bytes]
) -> None:
    hub, client = fuzzed_hub
    topic, payload = data
    topic = topic.replace("ROOT", hub.service.topics.root if hub.service else "paddock/v1", 1)
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    except ValueError:  # paho refuses some topics itself (wildcards, empty levels)
        return
    SENT["messages"] += 1
    _healthy(hub)


def test_after_the_fuzzing_a_real_car_still_records(
    fuzzed_hub: tuple[HubThread, Any], tmp_path: Path
) -> None:
    hub, _ = fuzzed_hub
    service = hub.service
    assert service is not None and hub._loop is not None
    car = FakeCar(service.config.mqtt.url, "fz-real", prefix=service.config.topic_prefix).connect()
    car.record("after-fuzz", 30)
    car.stop_recording("after-fuzz", frames=30)
    sealed = asyncio.run_coroutine_threadsafe(service.wait_sealed("fz-real", "after-fuzz"), hub._loop).result(
        60
    )
    assert sealed.frame_count == 30
    stats = httpx.get(f"{hub.url}/ingest", timeout=10).json()
    print(f"\nhub fuzz: {SENT['messages']} hostile messages; malformed counted {stats['malformed']}; "
          f"a real session of 30 frames afterwards sealed {sealed.frame_count}")  # fmt: skip
