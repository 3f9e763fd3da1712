"""Hypothesis over the car's command topics: whatever a command holds, the car answers it (ok or
error) on its response topic and keeps ticking."""

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from paho.mqtt.enums import CallbackAPIVersion

from tests.edge.harness import RecordingDaemon, T, car_config
from tests.fuzzing import car_commands

CAR = "fz-car"
COUNTS = {"commands": 0, "errors": 0, "ok": 0}


class CarThread:
    """The real car daemon on its own event loop in a thread, for a synchronous hypothesis test."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.daemon: RecordingDaemon | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name="fuzz-car", daemon=True
        )

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with RecordingDaemon(self.config) as daemon:
            self.daemon = daemon
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> "CarThread":
        self._thread.start()
        assert self._ready.wait(60), "the car did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


@pytest.fixture(scope="module")
def fuzzed_car(
    mosquitto: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CarThread, Any, Any]]:
    cfg = car_config(tmp_path_factory.mktemp("fuzz-car"), mosquitto.url, car=CAR)
    answers: queue.Queue[bytes] = queue.Queue()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="fuzzer-car")
    client.on_message = lambda _c, _u, msg: answers.put(msg.payload)
    client.connect("127.0.0.1", mosquitto.port)
    client.subscribe(f"paddock/v1/cars/{CAR}/cmd/+/response", qos=1)
    client.loop_start()
    with CarThread(cfg) as car:
        daemon = car.daemon
        assert daemon is not None
        deadline = time.monotonic() + 15
        while not daemon.link.connected.is_set():  # an asyncio.Event of the car's own loop
            assert time.monotonic() < deadline, "the car did not connect"
            time.sleep(0.05)
        yield car, client, answers
    client.loop_stop()
    client.disconnect()


SLOW = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=120, deadline=None, suppress_health_check=SLOW)
@given(command=car_commands())
def test_every_command_is_answered_and_the_car_keeps_ticking(
    fuzzed_car: tuple[CarThread, Any, Any], command: tuple[str, bytes]
) -> None:
    car, client, answers = fuzzed_car
    assert car.daemon is not None
    name, payload = command
    ticks = len(car.daemon.ticks)
    client.publish(T.command(CAR, name), payload, qos=1).wait_for_publish(5)
    answer = json.loads(answers.get(timeout=10))  # every command gets exactly one answer
    assert answer["status"] in ("ok", "error"), answer
    COUNTS["commands"] += 1
    COUNTS[answer["status"] if answer["status"] == "ok" else "errors"] += 1
    assert car.daemon.loop.running and len(car.daemon.ticks) >= ticks


def test_the_fuzz_counts(fuzzed_car: tuple[CarThread, Any, Any], tmp_path: Path) -> None:
    car, _, answers = fuzzed_car
    assert car.daemon is not None and car.daemon.link.connected.is_set()
    assert answers.empty()  # no command answered twice
    print(f"\ncar fuzz: {COUNTS['commands']} commands, {COUNTS['ok']} ok, {COUNTS['errors']} errors")
