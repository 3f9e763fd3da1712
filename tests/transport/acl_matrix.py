"""The access matrix of ARCHITECTURE.md §9 as cases, and a runner that tries each on a real broker.

A publish case connects as its identity, publishes, then publishes a marker it may send; an
operator (who may read everything under the prefix) watches. Once the marker arrives, the case's
message has arrived too if the broker let it through (one publisher's messages keep their order).

A subscribe case connects as its identity and subscribes; then the identity that may publish the
case's topic publishes there. A refused subscription is either refused outright (SUBACK 0x80) or
granted and left empty (Mosquitto filters what it delivers); either way nothing may arrive.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from deploy.fleet.identities import FleetStore, Role
from deploy.fleet.mosquitto import write_broker_files
from schemas.mqtt_url import BrokerUrl

P = "paddock/v1"

FLEET: list[tuple[str, Role, tuple[str, ...]]] = [
    ("car-1", Role.CAR, ("red",)),
    ("car-2", Role.CAR, ("blue",)),
    ("hub", Role.HUB, ()),
    ("ops", Role.OPERATOR, ()),
    ("gpu", Role.TRAINER, ()),
]

# (identity, topic, allowed)
PUBLISH_CASES: list[tuple[str, str, bool]] = [
    *[
        ("car-1", f"{P}/cars/car-1/{leaf}", True)
        for leaf in (
            "status",
            "telemetry",
            "frames",
            "events",
            "model/state",
            "detector/state",
            "cmd/mode/response",
        )
    ],
    *[
        ("car-1", f"{P}/{t}", False)
        for t in (
            "cars/car-1/cmd/mode",
            "cars/car-1/cmd/drive",
            "cars/car-1/model",
            "cars/car-1/other",
            "cars/car-2/telemetry",
            "cars/car-2/status",
            "cars/car-2/frames",
            "cars/car-2/cmd/mode",
            "groups/red/model",
            "fleet/estop",
            "jobs/train",
            "jobs/train/j1/result",
            "hub/status",
        )
    ],
    *[
        ("hub", f"{P}/{t}", True)
        for t in (
            "hub/status",
            "cars/car-1/cmd/mode",
            "cars/car-1/model",
            "groups/red/model",
            "fleet/estop",
            "jobs/train",
        )
    ],
    *[
        ("hub", f"{P}/{t}", False)
        for t in (
            "cars/car-1/telemetry",
            "cars/car-1/status",
            "cars/car-1/frames",
            "cars/car-1/cmd/mode/response",
            "jobs/train/j1/progress",
            "jobs/train/j1/result",
        )
    ],
    *[
        ("ops", f"{P}/{t}", True)
        for t in ("cars/car-2/cmd/drive", "cars/car-2/model", "groups/blue/model", "fleet/estop")
    ],
    *[
        ("ops", f"{P}/{t}", False)
        for t in (
            "jobs/train",
            "jobs/train/j1/result",
            "cars/car-2/frames",
            "cars/car-2/status",
            "hub/status",
        )
    ],
    *[("gpu", f"{P}/{t}", True) for t in ("jobs/train/j1/progress/gpu", "jobs/evaluate/j2/result/gpu")],
    *[
        ("gpu", f"{P}/{t}", False)
        for t in (
            "jobs/train",
            "jobs/train/j1",
            "jobs/train/j1/progress",  # a trainer reports under its own name only
            "jobs/train/j1/result",
            "jobs/train/j1/result/gpu-2",
            "cars/car-1/cmd/mode",
            "cars/car-1/frames",
            "cars/car-1/model",
            "groups/red/model",
            "fleet/estop",
            "hub/status",
        )
    ],
]

# (identity, filter, publisher, topic, allowed)
SUBSCRIBE_CASES: list[tuple[str, str, str, str, bool]] = [
    ("car-1", f"{P}/cars/car-1/cmd/+", "ops", f"{P}/cars/car-1/cmd/mode", True),
    ("car-1", f"{P}/cars/car-1/model", "hub", f"{P}/cars/car-1/model", True),
    ("car-1", f"{P}/groups/red/model", "hub", f"{P}/groups/red/model", True),
    ("car-1", f"{P}/fleet/estop", "ops", f"{P}/fleet/estop", True),
    ("car-1", f"{P}/cars/car-2/cmd/+", "ops", f"{P}/cars/car-2/cmd/mode", False),
    ("car-1", f"{P}/cars/+/cmd/+", "ops", f"{P}/cars/car-2/cmd/drive", False),
    ("car-1", f"{P}/cars/car-2/model", "hub", f"{P}/cars/car-2/model", False),
    ("car-1", f"{P}/groups/blue/model", "hub", f"{P}/groups/blue/model", False),
    ("car-1", f"{P}/groups/+/model", "hub", f"{P}/groups/blue/model", False),
    ("car-1", f"{P}/cars/car-2/telemetry", "car-2", f"{P}/cars/car-2/telemetry", False),
    ("car-1", f"{P}/cars/+/frames", "car-2", f"{P}/cars/car-2/frames", False),
    ("car-1", f"{P}/cars/car-1/cmd/+/response", "car-1", f"{P}/cars/car-1/cmd/mode/response", False),
    ("car-1", f"{P}/jobs/+", "hub", f"{P}/jobs/train", False),
    ("car-1", f"{P}/#", "car-2", f"{P}/cars/car-2/status", False),
    ("car-1", "#", "car-2", f"{P}/cars/car-2/events", False),
    *[
        ("hub", f"{P}/cars/+/{leaf}", "car-2", f"{P}/cars/car-2/{leaf}", True)
        for leaf in ("frames", "status", "telemetry", "events", "model/state", "detector/state")
    ],
    ("hub", f"{P}/cars/+/cmd/+/response", "car-1", f"{P}/cars/car-1/cmd/mode/response", True),
    ("hub", f"{P}/jobs/+/+/#", "gpu", f"{P}/jobs/train/j1/result/gpu", True),
    ("hub", f"{P}/cars/+/cmd/+", "ops", f"{P}/cars/car-1/cmd/mode", False),
    ("hub", f"{P}/fleet/estop", "ops", f"{P}/fleet/estop", True),
    ("hub", f"{P}/groups/+/model", "ops", f"{P}/groups/red/model", False),
    ("hub", "#", "ops", f"{P}/cars/car-1/cmd/drive", False),
    ("ops", f"{P}/#", "car-1", f"{P}/cars/car-1/frames", True),
    ("ops", f"{P}/cars/+/cmd/+/response", "car-1", f"{P}/cars/car-1/cmd/mode/response", True),
    ("ops", f"{P}/jobs/+/+/progress/+", "gpu", f"{P}/jobs/train/j1/progress/gpu", True),
    ("gpu", f"{P}/jobs/+", "hub", f"{P}/jobs/train", True),
    ("gpu", f"{P}/jobs/evaluate", "hub", f"{P}/jobs/evaluate", True),
    ("gpu", f"{P}/jobs/+/+/result/+", "gpu", f"{P}/jobs/train/j1/result/gpu", False),
    ("gpu", f"{P}/jobs/train/j1/progress/+", "gpu", f"{P}/jobs/train/j1/progress/gpu", True),  # claims
    ("gpu", f"{P}/cars/+/frames", "car-1", f"{P}/cars/car-1/frames", False),
    ("gpu", f"{P}/cars/car-1/cmd/+", "ops", f"{P}/cars/car-1/cmd/mode", False),
    ("gpu", f"{P}/fleet/estop", "ops", f"{P}/fleet/estop", False),
    ("gpu", f"{P}/#", "car-2", f"{P}/cars/car-2/telemetry", False),
]


def make_fleet(directory: Path, broker_url: str = "mqtt://127.0.0.1:1883") -> dict[str, str]:
    """Write the test fleet's store and Mosquitto files; returns each identity's password."""
    store = FleetStore.open(directory)
    store.broker_url = broker_url
    passwords = {}
    for name, role, groups in FLEET:
        _, passwords[name] = store.add(name, role, groups)
    store.save()
    write_broker_files(store)
    return passwords


_ids = itertools.count()


@dataclass
class Client:
    """A paho client that waits for what it asked: CONNACK, SUBACK, PUBACK."""

    url: str
    username: str | None
    password: str | None
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    client_id: str | None = None
    clean_session: bool = True

    def __post_init__(self) -> None:
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id or f"acl-{next(_ids)}",
            clean_session=self.clean_session,
        )
        if self.username is not None:
            self._client.username_pw_set(self.username, self.password)
        self._client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        self._connack: queue.Queue[int] = queue.Queue()
        self._subacks: queue.Queue[list[int]] = queue.Queue()
        self._client.on_connect = lambda _c, _u, _f, rc, _p: self._connack.put(rc.value)
        self._client.on_subscribe = lambda _c, _u, _m, rcs, _p: self._subacks.put([rc.value for rc in rcs])
        self.disconnected = threading.Event()
        # Closing joins paho's network thread, which sleeps this long before reconnecting.
        self._client.reconnect_delay_set(min_delay=0.05, max_delay=0.05)  # type: ignore[arg-type]
        self._client.on_disconnect = lambda *_a: self.disconnected.set()

    def connect(self, tls_ca: Path | None = None, timeout: float = 10.0) -> int:
        """The CONNACK reason (paho maps 3.1.1 codes to MQTT 5 ones: 0 accepted, 134/135 refused)."""
        broker = BrokerUrl.parse(self.url)
        if tls_ca is not None:
            self._client.tls_set(ca_certs=str(tls_ca))
        self._client.connect(broker.host, broker.port, keepalive=30)
        self._client.loop_start()
        rc = self._connack.get(timeout=timeout)
        return int(rc)

    def subscribe(self, topic_filter: str, timeout: float = 10.0) -> int:
        """The granted QoS, or 0x80 for a refused subscription."""
        self._client.subscribe(topic_filter, qos=1)
        return self._subacks.get(timeout=timeout)[0]

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> bool:
        """True once the broker acknowledged; False when the connection is gone (or goes meanwhile)."""
        info = self._client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + timeout
        try:
            while not info.is_published():
                if self.disconnected.is_set() or time.monotonic() > deadline:
                    return False
                info.wait_for_publish(0.02)
        except (RuntimeError, ValueError):
            return False
        return True

    def wait_for(self, payload: bytes, timeout: float = 10.0) -> list[tuple[str, bytes]]:
        """Everything received up to and including ``payload``; raises TimeoutError without it."""
        seen: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self.messages.get(timeout=left)
            except queue.Empty:
                break
            seen.append(item)
            if item[1] == payload:
                return seen
        raise TimeoutError(f"{payload!r} did not arrive within {timeout}s")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _marker_topic(who: str) -> str:
    return next(t for w, t, ok in PUBLISH_CASES if w == who and ok)


def run_publish_cases(url: str, passwords: dict[str, str]) -> dict[tuple[str, str], tuple[bool, bool]]:
    """For each publish case: (did the message reach the watching operator, did the connection survive)?

    Mosquitto 2.0 answers a refused QoS 1 publish with a PUBACK carrying reason 135, which a
    3.1.1 client (paho) takes as a broken connection: the marker then goes on a new one."""
    watcher = Client(url, "ops", passwords["ops"])
    assert watcher.connect() == 0
    assert watcher.subscribe(f"{P}/#") == 1
    results: dict[tuple[str, str], tuple[bool, bool]] = {}
    try:
        for i, (who, topic, _) in enumerate(PUBLISH_CASES):
            client = Client(url, who, passwords[who])
            assert client.connect() == 0, f"{who} could not connect"
            payload, marker = f"case-{i}".encode(), f"marker-{i}".encode()
            client.publish(topic, payload)
            survived = client.publish(_marker_topic(who), marker, timeout=5.0)
            client.close()
            if not survived:
                client = Client(url, who, passwords[who])
                assert client.connect() == 0
                assert client.publish(_marker_topic(who), marker)
                client.close()
            seen = {p for _, p in watcher.wait_for(marker)}
            results[(who, topic)] = (payload in seen, survived)
    finally:
        watcher.close()
    return results


def run_subscribe_cases(
    url: str, passwords: dict[str, str], grace_s: float = 0.5
) -> dict[tuple[str, str], tuple[int, bool]]:
    """For each subscribe case: (granted QoS or 0x80, whether the case's message arrived)."""
    subscribers: list[tuple[Client, int, bytes]] = []
    publishers: dict[str, Client] = {}
    try:
        for i, (who, topic_filter, publisher, _, _) in enumerate(SUBSCRIBE_CASES):
            client = Client(url, who, passwords[who])
            assert client.connect() == 0, f"{who} could not connect"
            subscribers.append((client, client.subscribe(topic_filter), f"sub-case-{i}".encode()))
            if publisher not in publishers:
                publishers[publisher] = Client(url, publisher, passwords[publisher])
                assert publishers[publisher].connect() == 0
        for (_, _, publisher, topic, _), (_, _, payload) in zip(SUBSCRIBE_CASES, subscribers, strict=True):
            publishers[publisher].publish(topic, payload)
        # The allowed deliveries show the broker has handled every publish; a refused one gets
        # a grace period on top, once for all.
        arrived: list[bool] = []
        for (*_, allowed), (client, _, payload) in zip(SUBSCRIBE_CASES, subscribers, strict=True):
            arrived.append(allowed and _arrives(client, payload, 10.0))
        time.sleep(grace_s)
        results: dict[tuple[str, str], tuple[int, bool]] = {}
        for i, ((who, topic_filter, *_, allowed), (client, granted, payload)) in enumerate(
            zip(SUBSCRIBE_CASES, subscribers, strict=True)
        ):
            got = arrived[i] if allowed else _arrives(client, payload, 0.0)
            results[(who, topic_filter)] = (granted, got)
        return results
    finally:
        for client, _, _ in subscribers:
            client.close()
        for client in publishers.values():
            client.close()


def _arrives(client: Client, payload: bytes, timeout: float) -> bool:
    try:
        client.wait_for(payload, timeout=max(timeout, 0.001))
        return True
    except TimeoutError:
        return False


def format_matrix(
    published: dict[tuple[str, str], tuple[bool, bool]], subscribed: dict[tuple[str, str], tuple[int, bool]]
) -> str:
    lines = []
    for (who, topic), (ok, survived) in published.items():
        after = "" if survived else " (connection closed)"
        lines.append(f"publish   {who:<6} {topic:<45} {'delivered' if ok else 'dropped'}{after}")
    for (who, topic_filter), (granted, arrived) in subscribed.items():
        suback = "0x80" if granted == 0x80 else f"qos{granted}"
        lines.append(
            f"subscribe {who:<6} {topic_filter:<45} {suback:<5} {'received' if arrived else 'nothing'}"
        )
    return "\n".join(lines)
