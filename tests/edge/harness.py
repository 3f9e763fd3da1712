"""Helpers for daemon tests against real brokers: a config, an observing MQTT client, a daemon
that keeps its ticks for inspection."""

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt

from edge.config import CarConfig
from edge.daemon import CarDaemon
from edge.loop import TickResult
from edge.pilots import Decision, Pilot
from firmware.camera import Frame
from schemas.mqtt_url import BrokerUrl
from schemas.payloads import decode_frame
from schemas.signing import public_key_pem
from schemas.topics import Topics

T = Topics()


def car_config(tmp_path: Path, url: str, key: Any = None, car: str = "car-1", **sections: Any) -> CarConfig:
    """A bench car: 50 Hz, quick reconnects, its own state dir; ``key`` signs models."""
    data: dict[str, Any] = {
        "state_dir": str(tmp_path / f"state-{car}"),
        "car": {"id": car, "group": "fleet"},
        "broker": {"url": url, "keepalive_s": 5, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "loop": {"hz": 50},
        "camera": {"kind": "test_pattern"},
        "actuators": {"kind": "none"},
        "publish": {"telemetry_hz": 10, "preview_hz": 5},
        "recorder": {"shutdown_flush_s": 5.0},
        "models": {"public_key": None, "allow_unsigned": True, "preload_runtimes": ["onnx"]},
    }
    if key is not None:
        pub = tmp_path / "hub.pub"
        pub.write_bytes(public_key_pem(key.public_key()))
        data["models"] = {"public_key": str(pub), "allow_unsigned": False, "preload_runtimes": ["onnx"]}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return CarConfig.from_dict(data, "test config")


SIM_CAR: dict[str, dict[str, Any]] = {
    "camera": {"kind": "sim"},
    "actuators": {"kind": "sim"},
    "sim": {"track": "oval", "clock": "lockstep", "speedup": 4},
    "loop": {"hz": 30, "start_mode": "autopilot"},
    "publish": {"telemetry_hz": 10, "preview_hz": 0},
}


def sim_car_config(
    tmp_path: Path, url: str, key: Any = None, car: str = "car-1", **sections: Any
) -> CarConfig:
    """A car on the simulator's body: the oval on the lockstep clock at 4x, 30 Hz, no preview.
    ``sections`` change single keys of a section (``loop={"start_mode": "stop"}``) or add sections."""
    merged = {
        name: SIM_CAR.get(name, {}) | sections.get(name, {}) for name in SIM_CAR.keys() | sections.keys()
    }
    return car_config(tmp_path, url, key, car=car, **merged)


class ConstantPilot(Pilot):
    def __init__(self, steering: float, throttle: float | None, name: str = "const") -> None:
        self.name = name
        self.value = (steering, throttle)

    def act(self, frame: Frame | None) -> Decision:
        return Decision(self.value[0], self.value[1], 0.05)


class RecordingDaemon(CarDaemon):
    """The real daemon, keeping every tick and event for the test to look at."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ticks: list[TickResult] = []
        self.local_events: list[dict[str, Any]] = []
        self.event_listeners.append(self.local_events.append)

    def on_tick(self, result: TickResult) -> None:
        self.ticks.append(result)
        super().on_tick(result)


class Observer:
    """An MQTT client that keeps every message per topic (reconnecting if the broker restarts).

    ``persistent`` uses a persistent session (clean_session false), as the hub does, so QoS 1
    messages that arrive while it is reconnecting are queued by the broker.
    """

    def __init__(self, url: str, topics: list[str], identifier: str = "observer", persistent: bool = False):
        self.url = BrokerUrl.parse(url)
        self.topics = topics
        self.identifier = identifier
        self.persistent = persistent
        self.messages: dict[str, list[aiomqtt.Message]] = defaultdict(list)
        self.arrivals: list[aiomqtt.Message] = []  # every message, in arrival order
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.client: aiomqtt.Client | None = None

    async def __aenter__(self) -> "Observer":
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(10):
            await self.subscribed.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        done, _ = await asyncio.wait({self._task}, timeout=15)
        assert done, "the observer did not stop"

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.url.host,
                    self.url.port,
                    identifier=self.identifier,
                    clean_session=not self.persistent,
                    keepalive=5,
                ) as client:
                    self.client = client
                    await client.subscribe([(t, 1) for t in self.topics])
                    self.subscribed.set()
                    async for msg in client.messages:
                        self.messages[str(msg.topic)].append(msg)
                        self.arrivals.append(msg)
            except aiomqtt.MqttError:
                self.client = None
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None  # cancelled while disconnecting
                await asyncio.sleep(0.2)

    def json(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.messages.get(topic, []) if m.payload]  # type: ignore[arg-type]

    def events(self, car: str = "car-1", kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.json(T.events(car)) if kind is None or e["type"] == kind]

    def frames(self, car: str = "car-1") -> list[tuple[Any, bytes, int]]:
        out = []
        for m in self.messages.get(T.frames(car), []):
            record, jpeg = decode_frame(m.payload)  # type: ignore[arg-type]
            out.append((record, jpeg, m.qos))
        return out

    async def publish(self, topic: str, payload: Any, qos: int = 1, retain: bool = False) -> None:
        assert self.client is not None
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        await self.client.publish(topic, payload, qos=qos, retain=retain)


async def until(predicate: Callable[[], Any], limit_s: float = 15.0, what: str = "condition") -> Any:
    """Wait for ``predicate()`` to be truthy (state changed by other threads and the broker)."""
    try:
        async with asyncio.timeout(limit_s):
            while not (value := predicate()):  # noqa: ASYNC110 - polling another thread's state
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {limit_s}s waiting for {what}") from None
    return value


async def clear_retained(url: str, topics: list[str]) -> None:
    b = BrokerUrl.parse(url)
    async with aiomqtt.Client(b.host, b.port, identifier="cleaner") as c:
        for topic in topics:
            await c.publish(topic, b"", qos=1, retain=True)
