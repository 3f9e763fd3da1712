"""The hub's own MQTT 3.1.1 client (hub/mqtt.py) against real brokers: delivery, late and batched
acks, redelivery of what was not acknowledged, publishing through a broker restart, keepalive, the
will, credentials and TLS. The packet parser is also fed byte streams split at every boundary."""

import datetime
import os
import queue
import random
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from deploy.broker import EmbeddedBroker
from hub.ingest.mqtt import (
    PINGRESP,
    PUBACK,
    SUBACK,
    Message,
    MqttClient,
    Will,
    encode_length,
    publish_packet,
)
from schemas.mqtt_url import BrokerUrl
from tests.servers.clients import retained_payload
from tests.servers.mosquitto import Mosquitto


class Inbox:
    def __init__(self) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()

    def __call__(self, msg: Message) -> None:
        self.messages.put(msg)

    def take(self, n: int, timeout: float = 10.0) -> list[Message]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"received {len(out)} of {n} messages")
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                continue
        return out

    def quiet(self, seconds: float) -> list[Message]:
        """Whatever arrives within ``seconds``."""
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out


def _client(url: str, inbox: Callable[[Message], None], **kw: Any) -> MqttClient:
    b = BrokerUrl.parse(url)
    kw.setdefault("client_id", f"t-{uuid.uuid4().hex[:8]}")
    kw.setdefault("subscriptions", [("t/#", 1)])
    kw.setdefault("reconnect_min_s", 0.2)
    kw.setdefault("reconnect_max_s", 1.0)
    return MqttClient(b.host, b.port, on_message=inbox, username=b.username, password=b.password, **kw)


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


@pytest.fixture
def publisher() -> Iterator[Callable[[str], paho.Client]]:
    clients: list[paho.Client] = []

    def make(url: str) -> paho.Client:
        b = BrokerUrl.parse(url)
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
        c.max_queued_messages_set(0)
        c.connect(b.host, b.port)
        c.loop_start()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.loop_stop()
        c.disconnect()


def _sizes() -> list[int]:
    # Empty, around the 1/2/3-byte remaining-length boundaries, and beyond the 256 KB read buffer.
    return [0, 1, 100, 117, 118, 119, 16_370, 16_371, 16_372, 10_000, 300_000, 1_500_000, 5]


def test_messages_arrive_whole_and_acks_in_one_batch_end_the_redelivery(
    broker_url: str, publisher: Callable[[str], paho.Client]
) -> None:
    inbox = Inbox()
    client_id = f"t-{uuid.uuid4().hex[:8]}"
    client = _client(broker_url, inbox, client_id=client_id)
    client.start()
    try:
        _wait(client.connected.is_set, 10, "connected")
        time.sleep(0.2)  # the SUBACK
        pub = publisher(broker_url)
        sent = [(f"t/{i % 3}", random.Random(i).randbytes(n)) for i, n in enumerate(_sizes())]
        for topic, payload in sent:
            pub.publish(topic, payload, qos=1).wait_for_publish(10)
        got = inbox.take(len(sent))
        assert [(m.topic, m.payload) for m in got] == sent
        assert all(m.qos == 1 and m.mid > 0 and m.connection == client.connection for m in got)
        writes = client.stats["writes"]
        client.ack([m.mid for m in got], got[0].connection)
        _wait(lambda: client.stats["writes"] > writes, 5, "acks written")
        assert client.stats["acks"] == len(sent) and client.stats["writes"] == writes + 1  # one write
        time.sleep(0.3)  # let the broker take the acks
    finally:
        client.stop()
    again = Inbox()
    client = _client(broker_url, again, client_id=client_id)
    client.start()
    try:
        _wait(client.connected.is_set, 10, "reconnected")
        assert again.quiet(1.0) == []  # all acknowledged: nothing comes back
    finally:
        client.stop()


def test_unacknowledged_messages_come_back_on_the_next_connection(
    mosquitto: Mosquitto, publisher: Callable[[str], paho.Client]
) -> None:
    inbox = Inbox()
    client_id = f"t-{uuid.uuid4().hex[:8]}"
    client = _client(mosquitto.url, inbox, client_id=client_id)
    client.start()
    try:
        _wait(client.connected.is_set, 10, "connected")
        time.sleep(0.2)
        pub = publisher(mosquitto.url)
        for i in range(50):
            pub.publish("t/x", str(i).encode(), qos=1).wait_for_publish(10)
        got = inbox.take(50)
        client.ack([m.mid for m in got[:20]], client.connection)
        time.sleep(0.3)
    finally:
        client.stop()
    again = Inbox()
    client = _client(mosquitto.url, again, client_id=client_id)
    client.start()
    try:
        back = again.take(30)
        assert [m.payload for m in back] == [str(i).encode() for i in range(20, 50)]
        stale = client.stats["acks"]
        client.ack([m.mid for m in back], client.connection - 1)  # acks owed on the old connection
        assert client.stats["acks"] == stale  # are dropped, not sent on this one
    finally:
        client.stop()


def test_a_qos1_publish_waits_for_the_broker_and_survives_its_restart(
    mosquitto_factory: type[Mosquitto],
) -> None:
    broker = mosquitto_factory()
    broker.start()
    client = _client(broker.url, Inbox())
    client.start()
    try:
        _wait(client.connected.is_set, 10, "connected")
        assert client.publish("t/a", b"one", qos=1, retain=True).wait(5)
        assert retained_payload(broker.url, "t/a") == b"one"
        broker.stop()
        _wait(lambda: not client.connected.is_set(), 10, "disconnect noticed")
        assert not client.publish("t/q0", b"lost", qos=0).wait(1)  # QoS 0 has nowhere to go
        handle = client.publish("t/a", b"two", qos=1, retain=True)
        assert not handle.wait(0.5)  # kept for the next connection
        assert client.inflight == 1
        broker.start()
        assert handle.wait(15)
        assert client.inflight == 0
        assert retained_payload(broker.url, "t/a") == b"two"
        assert client.connection == 2
    finally:
        client.stop()


def test_keepalive_holds_an_idle_connection(
    mosquitto: Mosquitto, publisher: Callable[[str], paho.Client]
) -> None:
    inbox = Inbox()
    client = _client(mosquitto.url, inbox, keepalive=1)
    client.start()
    try:
        _wait(client.connected.is_set, 10, "connected")
        time.sleep(7.0)  # Mosquitto drops a client silent for 1.5 keepalives (checked about every 5 s)
        assert client.connection == 1 and client.connected.is_set()
        publisher(mosquitto.url).publish("t/late", b"x", qos=1).wait_for_publish(5)
        assert [m.payload for m in inbox.take(1)] == [b"x"]
    finally:
        client.stop()


def test_a_dropped_connection_publishes_the_will_and_reconnects(broker_url: str) -> None:
    status = f"will/{uuid.uuid4().hex[:8]}"  # not under t/: other tests' subscriptions must not see it
    client = _client(broker_url, Inbox(), will=Will(status, b"gone", qos=1, retain=True))
    client.start()
    try:
        _wait(client.connected.is_set, 10, "connected")
        assert client.publish(status, b"here", qos=1, retain=True).wait(5)
        sock = client._sock
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)  # the network goes away: no DISCONNECT reaches the broker
        _wait(lambda: client.connection == 2 and client.connected.is_set(), 15, "reconnected")
        assert retained_payload(broker_url, status) == b"gone"
        assert client.publish(status, b"", qos=1, retain=True).wait(5)  # clear it
    finally:
        client.stop()


def test_wrong_credentials_are_refused_and_retried(
    mosquitto_factory: type[Mosquitto], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    passwords = tmp_path / "passwd"
    passwords.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "hub", "s3cret"], check=True)
    broker = mosquitto_factory(extra_config=f"allow_anonymous false\npassword_file {passwords}\n")
    broker.start()
    wrong = _client(f"mqtt://hub:nope@127.0.0.1:{broker.port}", Inbox())
    with caplog.at_level("WARNING", logger="hub.ingest.mqtt"):
        wrong.start()
        try:
            time.sleep(1.5)
            assert not wrong.connected.is_set()
        finally:
            wrong.stop()
    assert "bad user name or password" in caplog.text or "not authorised" in caplog.text
    inbox = Inbox()
    right = _client(f"mqtt://hub:s3cret@127.0.0.1:{broker.port}", inbox)
    right.start()
    try:
        _wait(right.connected.is_set, 10, "connected with the right password")
        time.sleep(0.2)
        assert right.publish("t/me", b"hello", qos=1).wait(5)
        assert [m.payload for m in inbox.take(1)] == [b"hello"]
    finally:
        right.stop()


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (cryptography), as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paddock test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def test_tls(mosquitto_factory: type[Mosquitto], tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path / "tls")
    broker = mosquitto_factory(extra_config=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    broker.start()
    inbox = Inbox()
    client = _client(f"mqtt://127.0.0.1:{broker.port}", inbox, tls=ssl.create_default_context(cafile=str(ca)))
    client.start()
    try:
        _wait(client.connected.is_set, 10, "connected over TLS")
        time.sleep(0.2)
        payloads = [random.Random(n).randbytes(n) for n in (0, 10_000, 300_000, 7)]
        for p in payloads:
            assert client.publish("t/tls", p, qos=1).wait(5)
        got = inbox.take(len(payloads))
        assert [m.payload for m in got] == payloads
    finally:
        client.stop()
    untrusted = _client(f"mqtt://127.0.0.1:{broker.port}", Inbox(), tls=ssl.create_default_context())
    untrusted.start()  # the system's CAs do not know this broker: it must not connect
    try:
        time.sleep(1.0)
        assert not untrusted.connected.is_set()
    finally:
        untrusted.stop()


# --- the parser, fed byte streams split anywhere -------------------------------------------------


def test_remaining_length_encoding() -> None:
    for n, encoded in [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
                       (16_384, b"\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f")]:  # fmt: skip
        assert encode_length(n) == encoded
    with pytest.raises(ValueError):
        encode_length(268_435_456)


def _feed(client: MqttClient, stream: bytes, cuts: list[int]) -> None:
    """Give ``stream`` to the parser in pieces, keeping unparsed bytes as the I/O loop does."""
    pending = b""
    last = 0
    for cut in [*cuts, len(stream)]:
        pending += stream[last:cut]
        last = cut
        buf = bytearray(pending)
        view = memoryview(buf)
        used = client._parse(view, len(buf))
        view.release()
        pending = pending[used:]
    assert pending == b""


def test_the_parser_takes_packets_split_at_any_byte() -> None:
    inbox = Inbox()
    client = MqttClient("127.0.0.1", 1, client_id="p", subscriptions=[("t/#", 1)], on_message=inbox)
    messages = [
        ("t/a", b"", 0, False, 0),
        ("t/b", b"x" * 120, 1, False, 7),
        ("t/ü", bytes(range(256)) * 70, 1, True, 65535),
        ("t/c", b"y" * 16_380, 0, True, 0),
    ]
    stream = b""
    for topic, payload, qos, retain, mid in messages:
        stream += publish_packet(topic, payload, qos, retain, mid)
        stream += bytes((PUBACK << 4, 2, 0, 9)) + bytes((PINGRESP << 4, 0)) + bytes((SUBACK << 4, 3, 0, 1, 0))
    expected = [(t, p, q, r, m) for t, p, q, r, m in messages]

    def got() -> list[tuple[str, bytes, int, bool, int]]:
        out = inbox.take(len(messages), timeout=1)
        return [(m.topic, m.payload, m.qos, m.retain, m.mid) for m in out]

    for cut in range(len(stream) + 1):  # every single split point
        if cut % 97 and cut > 300 and abs(cut - len(stream) // 2) > 300:
            continue  # every byte of the headers, a sample of the payloads
        _feed(client, stream, [cut])
        assert got() == expected
    rng = random.Random(5)
    for _ in range(50):  # many random splits at once
        _feed(client, stream, sorted(rng.sample(range(1, len(stream)), 20)))
        assert got() == expected
    _feed(client, stream, list(range(1, 400)))  # one byte at a time through the first packets
    assert got() == expected
    assert inbox.quiet(0.05) == []  # and never a message twice


def test_the_client_is_safe_to_use_from_many_threads(
    mosquitto: Mosquitto,
) -> None:
    inbox = Inbox()
    client = _client(mosquitto.url, inbox, subscriptions=[("mt/#", 1)])
    client.start()
    try:
        _wait(client.connected.is_set, 10, "connected")
        time.sleep(0.2)
        handles: list[Any] = []
        lock = threading.Lock()

        def send(k: int) -> None:
            for i in range(200):
                h = client.publish(f"mt/{k}", f"{k}:{i}".encode(), qos=1)
                with lock:
                    handles.append(h)

        threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(h.wait(10) for h in handles)
        got = inbox.take(800)
        for k in range(4):  # each publisher's order is kept
            assert [m.payload for m in got if m.topic == f"mt/{k}"] == [
                f"{k}:{i}".encode() for i in range(200)
            ]
        client.ack([m.mid for m in got], client.connection)
    finally:
        client.stop()


def test_a_hung_broker_is_noticed_and_left(mosquitto_factory: type[Mosquitto]) -> None:
    """A broker that stops answering (SIGSTOP: the TCP connection stays open) is found out by the
    keepalive ping, and the client connects again once it is back."""
    broker = mosquitto_factory()
    broker.start()
    assert broker.pid is not None
    reasons: list[str] = []
    client = _client(broker.url, Inbox(), keepalive=1, on_disconnect=reasons.append, connect_timeout_s=1.0)
    client.start()
    try:
        _wait(client.connected.is_set, 10, "connected")
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            _wait(lambda: not client.connected.is_set(), 10, "the silent broker noticed")
            assert reasons and "no answer" in reasons[0]
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        _wait(lambda: client.connected.is_set() and client.connection >= 2, 20, "connected again")
        assert client.publish("t/back", b"x", qos=1).wait(5)
    finally:
        client.stop()


def test_a_subscription_never_acknowledged_is_made_again_on_a_new_connection(
    publisher: Callable[[str], paho.Client],
) -> None:
    """A broker session that answers pings but never SUBACKs leaves the client deaf; it must connect
    again. amqtt 0.12 left such sessions behind when clients came and went together: here its first
    SUBSCRIBE is swallowed on purpose."""
    with EmbeddedBroker() as broker:
        handle_subscription = broker._broker._handle_subscription
        swallowed: list[str] = []

        async def swallow_the_first(session: Any, handler: Any, waiter: Any) -> None:
            if not swallowed:
                swallowed.append(session.client_id)
                return
            await handle_subscription(session, handler, waiter)

        broker._broker._handle_subscription = swallow_the_first
        inbox, reasons = Inbox(), list[str]()
        client = _client(broker.url, inbox, keepalive=1, on_disconnect=reasons.append)
        client.start()
        try:
            _wait(lambda: client.connection >= 2 and client.connected.is_set(), 10, "a second connection")
            assert swallowed == [client.client_id]
            assert reasons and "did not acknowledge the subscription" in reasons[0], reasons
            _wait(lambda: client._subscribed, 5, "the second subscription acknowledged")
            publisher(broker.url).publish("t/after", b"heard", qos=1).wait_for_publish(5)
            assert [m.payload for m in inbox.take(1, timeout=5)] == [b"heard"]
        finally:
            client.stop()
