"""The access matrix of ARCHITECTURE.md §9 against real Mosquitto (with the files `paddock fleet`
writes) and against the embedded broker (with the same identity store), with real clients."""

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.broker import EmbeddedBroker
from deploy.fleet.identities import FleetStore
from deploy.fleet.mosquitto import ACL_FILE, PASSWORD_FILE, write_broker_files
from schemas.mqtt_url import BrokerUrl
from tests.servers.mosquitto import Mosquitto
from tests.transport.acl_matrix import (
    PUBLISH_CASES,
    SUBSCRIBE_CASES,
    Client,
    format_matrix,
    make_fleet,
    run_publish_cases,
    run_subscribe_cases,
)


@pytest.fixture(params=["mosquitto", "amqtt"])
def fleet_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Any]]:
    """(url, passwords, the broker) of a broker running on the test fleet."""
    fleet = tmp_path / "fleet"
    passwords = make_fleet(fleet)
    if request.param == "mosquitto":
        server = Mosquitto(
            tmp_path / "mosquitto", password_file=fleet / PASSWORD_FILE, acl_file=fleet / ACL_FILE
        )
        server.start()
        try:
            yield server.url, passwords, server
        finally:
            server.stop()
    else:
        with EmbeddedBroker(fleet_dir=fleet) as broker:
            yield broker.url, passwords, broker


@pytest.fixture
def fleet_broker(fleet_server: tuple[str, dict[str, str], Any]) -> tuple[str, dict[str, str]]:
    return fleet_server[0], fleet_server[1]


def test_only_fleet_identities_get_in(fleet_broker: tuple[str, dict[str, str]]) -> None:
    url, passwords = fleet_broker
    refused = {
        "anonymous": Client(url, None, None),
        "wrong password": Client(url, "car-1", passwords["car-2"]),
        "unknown user": Client(url, "car-9", passwords["car-1"]),
    }
    for what, client in refused.items():
        rc = client.connect()
        client.close()
        assert rc in (134, 135), f"{what}: CONNACK {rc}"  # bad user name or password; not authorised
    ok = Client(url, "car-1", passwords["car-1"])
    assert ok.connect() == 0
    ok.close()


def test_acl_matrix(fleet_broker: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    url, passwords = fleet_broker
    published = run_publish_cases(url, passwords)
    subscribed = run_subscribe_cases(url, passwords)
    with capsys.disabled():
        print(f"\nACL matrix on {url}\n{format_matrix(published, subscribed)}")
    wrong = [
        f"publish {who} {topic}: {'delivered' if published[(who, topic)][0] else 'dropped'}"
        for who, topic, allowed in PUBLISH_CASES
        if published[(who, topic)][0] != allowed
    ]
    wrong += [
        f"subscribe {who} {topic_filter}: suback {subscribed[(who, topic_filter)][0]:#x}, "
        f"{'received' if subscribed[(who, topic_filter)][1] else 'nothing'}"
        for who, topic_filter, _, _, allowed in SUBSCRIBE_CASES
        if subscribed[(who, topic_filter)][1] != allowed
        or (allowed and subscribed[(who, topic_filter)][0] == 0x80)
    ]
    assert not wrong, "\n".join(wrong)


def test_a_refused_client_neither_wipes_nor_takes_over_a_session(
    fleet_broker: tuple[str, dict[str, str]],
) -> None:
    """A CONNECT with a wrong password and the hub's client id leaves the hub's session alone:
    what was queued for it while away arrives, and its next connection is not thrown off."""
    url, passwords = fleet_broker
    frames = "paddock/v1/cars/car-1/frames"

    def hub() -> Client:
        client = Client(url, "hub", passwords["hub"], client_id="the-hub", clean_session=False)
        assert client.connect() == 0
        return client

    first = hub()
    assert first.subscribe("paddock/v1/cars/+/frames") == 1
    first.close()
    car = Client(url, "car-1", passwords["car-1"])
    assert car.connect() == 0
    for i in range(5):
        assert car.publish(frames, f"queued-{i}".encode())
    intruder = Client(url, "hub", "guessed", client_id="the-hub", clean_session=True)
    assert intruder.connect() in (134, 135)
    intruder.close()

    again = hub()
    try:
        got = [p for _, p in again.wait_for(b"queued-4")]
        assert got == [f"queued-{i}".encode() for i in range(5)]
        intruder = Client(url, "hub", "guessed", client_id="the-hub")
        assert intruder.connect() in (134, 135)
        intruder.close()
        assert car.publish(frames, b"after")
        again.wait_for(b"after")
        assert not again.disconnected.is_set()
    finally:
        again.close()
        car.close()


def test_a_removed_identity_is_refused_once_the_broker_reloads(
    fleet_server: tuple[str, dict[str, str], Any], tmp_path: Path
) -> None:
    url, passwords, server = fleet_server
    store = FleetStore.open(tmp_path / "fleet")
    store.remove("car-2")
    store.save()
    write_broker_files(store)
    if isinstance(server, Mosquitto):
        assert server.pid is not None
        os.kill(server.pid, signal.SIGHUP)  # Mosquitto reads its password and ACL files again
    deadline = time.monotonic() + 5
    while True:  # the embedded broker looks at the store at most once a second
        client = Client(url, "car-2", passwords["car-2"])
        rc = client.connect()
        client.close()
        if rc != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rc in (134, 135)
    still = Client(url, "car-1", passwords["car-1"])
    assert still.connect() == 0
    still.close()


def _connect_packet(client_id: str, username: str, password: str, will_topic: str, will: bytes) -> bytes:
    """An MQTT 3.1.1 CONNECT with a retained QoS 1 last will."""

    def string(value: str | bytes) -> bytes:
        raw = value.encode() if isinstance(value, str) else value
        return len(raw).to_bytes(2, "big") + raw

    flags = 0x02 | 0x04 | (1 << 3) | 0x20 | 0x80 | 0x40
    body = string("MQTT") + bytes((4, flags)) + (30).to_bytes(2, "big")
    body += string(client_id) + string(will_topic) + string(will) + string(username) + string(password)
    assert len(body) < 128  # one length byte
    return bytes((0x10, len(body))) + body


def _connect_with_will(url: str, username: str, password: str, topic: str, payload: bytes) -> int:
    """Connect over a raw socket with a last will on ``topic``, then drop the connection unannounced
    (so the broker sends the will); returns the CONNACK's return code."""
    broker = BrokerUrl.parse(url)
    packet = _connect_packet(f"will-{payload.decode()}", username, password, topic, payload)
    with socket.create_connection((broker.host, broker.port), timeout=5) as sock:
        sock.sendall(packet)
        connack = sock.recv(4)
        time.sleep(0.1)
    return connack[3] if len(connack) == 4 else -1


def test_a_last_will_obeys_the_acl(fleet_broker: tuple[str, dict[str, str]]) -> None:
    """A car cannot release the e-stop through its last will (amqtt 0.12 sent wills unchecked)."""
    url, passwords = fleet_broker
    watcher = Client(url, "ops", passwords["ops"])
    assert watcher.connect() == 0
    assert watcher.subscribe("paddock/v1/#") == 1
    try:
        estop = _connect_with_will(url, "car-1", passwords["car-1"], "paddock/v1/fleet/estop", b"released")
        own = _connect_with_will(url, "car-1", passwords["car-1"], "paddock/v1/cars/car-1/status", b"dead")
        assert own == 0
        seen = [p for _, p in watcher.wait_for(b"dead")]
        assert b"released" not in seen, f"the forbidden will was sent (CONNACK {estop})"
    finally:
        watcher.close()


def test_the_embedded_broker_keeps_a_client_id_to_its_identity(tmp_path: Path) -> None:
    """A car cannot take over the hub's session by using its client id (on Mosquitto the shipped
    configs' use_username_as_clientid does it: tests/transport/test_client_certs.py)."""
    fleet = tmp_path / "fleet"
    passwords = make_fleet(fleet)
    with EmbeddedBroker(fleet_dir=fleet) as broker:
        hub = Client(broker.url, "hub", passwords["hub"], client_id="the-hub", clean_session=False)
        assert hub.connect() == 0
        try:
            car = Client(broker.url, "car-1", passwords["car-1"], client_id="the-hub")
            assert car.connect() == 135
            car.close()
            assert hub.subscribe("paddock/v1/cars/+/status") == 1
            assert not hub.disconnected.is_set()
        finally:
            hub.close()
        again = Client(broker.url, "hub", passwords["hub"], client_id="the-hub", clean_session=False)
        assert again.connect() == 0
        again.close()
