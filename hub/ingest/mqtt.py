"""The hub's MQTT 3.1.1 client: one connection, a persistent session, late acknowledgements in batches.

Why not paho: ingest is the hub's hot path, and the hub acknowledges a frame only once it is on disk.
paho reads every packet with several ``recv`` calls after its own ``select``, and sends each PUBACK as
a separate write that also wakes its loop; with 10 KB frames that costs more CPU than everything the hub
does to persist a frame. This client reads the socket in large chunks, parses every complete packet in
a chunk, and sends the PUBACKs of a whole fsync batch in one write.

Scope — what the hub needs, nothing more:

* CONNECT with clean session off, keepalive, a will, user name and password, TLS;
* SUBSCRIBE (sent on every connection, before anything else);
* PUBLISH received at QoS 0 and 1, acknowledged by the caller (:meth:`MqttClient.ack`) in the order
  the caller chooses; acks owed on a lost connection are dropped (the broker resends those messages);
* PUBLISH sent at QoS 0 and 1 with retain; a QoS 1 message is kept until the broker acknowledges it and
  resent (with DUP) on the next connection;
* PINGREQ when idle, reconnect with exponential backoff, DISCONNECT on stop.

One I/O thread owns the socket: it reads, parses and calls ``on_message`` (keep that callback short),
and writes what other threads queued (they wake it through a socket pair). The callbacks run on it.
"""

import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

# Packet types (the high nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14

MAX_PACKET = 268_435_455  # the largest remaining length MQTT can encode
_U16 = struct.Struct("!H")
_PUBACK = struct.Struct("!BBH")
_PINGREQ = bytes((PINGREQ << 4, 0))
_DISCONNECT = bytes((DISCONNECT << 4, 0))
_CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}
_RECV_BYTES = 256 * 1024


class ProtocolError(Exception):
    """The broker sent something this client does not accept; the connection is dropped."""


class ConnectionRefused(Exception):
    """The broker answered CONNECT with a refusal (bad credentials, client id rejected, ...)."""


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class Message(NamedTuple):
    """A received PUBLISH. ``mid`` is 0 for QoS 0; ``connection`` identifies the connection it came on
    (an ack must go back on the same one)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    connection: int


class PublishHandle:
    """The fate of one publish: :meth:`wait` until the broker has it (QoS 1: its PUBACK; QoS 0: written)."""

    __slots__ = ("_event", "_ok")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._ok = False

    def _settle(self, ok: bool) -> None:
        self._ok = ok
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once published; False on timeout or if it cannot be (QoS 0 while disconnected)."""
        self._event.wait(timeout)
        return self._ok

    def is_published(self) -> bool:
        return self._ok


@dataclass(slots=True)
class _Outgoing:
    packet: bytes
    handle: PublishHandle
    sent: bool = False


def encode_length(n: int) -> bytes:
    """MQTT's variable-length remaining-length field."""
    if not 0 <= n <= MAX_PACKET:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    if len(data) > 65535:
        raise ValueError("an MQTT string is at most 65535 bytes")
    return _U16.pack(len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_length(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    clean_session: bool,
    keepalive: int,
    will: Will | None = None,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    flags = 0x02 if clean_session else 0
    payload = _string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += _string(will.topic) + _string(will.payload)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _string(password)
    header = _string("MQTT") + bytes((4, flags)) + _U16.pack(keepalive)
    return _packet(CONNECT << 4, header + payload)


def publish_packet(topic: str, payload: bytes, qos: int, retain: bool, mid: int, dup: bool = False) -> bytes:
    first = (PUBLISH << 4) | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    head = _string(topic) + (_U16.pack(mid) if qos else b"")
    return bytes((first,)) + encode_length(len(head) + len(payload)) + head + payload


def subscribe_packet(mid: int, filters: Sequence[tuple[str, int]]) -> bytes:
    body = _U16.pack(mid) + b"".join(_string(f) + bytes((qos,)) for f, qos in filters)
    return _packet((SUBSCRIBE << 4) | 0x02, body)


class MqttClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        subscriptions: Sequence[tuple[str, int]],
        on_message: Callable[[Message], None],
        on_connect: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[str], None] | None = None,
        clean_session: bool = False,
        keepalive: int = 30,
        will: Will | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 10.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if any(qos not in (0, 1) for _, qos in subscriptions):
            raise ValueError("subscriptions are at QoS 0 or 1")
        self.host, self.port = host, port
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.clean_session = clean_session
        self.keepalive = keepalive
        self.will = will
        self.username, self.password = username, password
        self.tls = tls
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = max(reconnect_min_s, reconnect_max_s)
        self.connect_timeout_s = connect_timeout_s

        self.connected = threading.Event()
        self.connection = 0  # increases with every connection; acks name the one they belong to
        self.stats = {"received": 0, "reads": 0, "writes": 0, "acks": 0}
        self._lock = threading.Lock()
        self._out: list[bytes] = []  # bytes for the current connection, in order
        self._out_done: list[PublishHandle] = []  # QoS 0 publishes settled once written
        self._inflight: dict[int, _Outgoing] = {}  # our QoS 1 publishes awaiting PUBACK (insertion order)
        self._next_mid = 0
        self._subscribe_mid = 0
        self._subscribed = False  # the current connection's SUBACK has arrived
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._io_thread = 0
        self._sock: socket.socket | None = None  # the current connection's socket (for diagnostics)
        self._topics: dict[bytes, str] = {}

    # --- public API -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, send DISCONNECT, close, and stop reconnecting."""
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the MQTT thread did not stop within %.0f s", timeout)
                return
            self._thread = None
        self._wake_r.close()
        self._wake_w.close()

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> PublishHandle:
        if qos not in (0, 1):
            raise ValueError("publish at QoS 0 or 1")
        if "+" in topic or "#" in topic or not topic:
            raise ValueError(f"cannot publish to {topic!r}")
        handle = PublishHandle()
        with self._lock:
            if qos == 1:
                mid = self._allocate_mid()
                out = _Outgoing(publish_packet(topic, payload, 1, retain, mid), handle)
                self._inflight[mid] = out
                if self.connected.is_set():
                    out.sent = True
                    self._out.append(out.packet)
            elif self.connected.is_set():
                self._out.append(publish_packet(topic, payload, 0, retain, 0))
                self._out_done.append(handle)
            else:
                handle._settle(False)
                return handle
        self._wake()
        return handle

    def ack(self, mids: Iterable[int], connection: int) -> None:
        """PUBACKs for ``mids``, in that order and in one write, if ``connection`` is still current."""
        pack = _PUBACK.pack
        data = b"".join([pack(PUBACK << 4, 2, mid) for mid in mids])
        if not data:
            return
        with self._lock:
            if connection != self.connection or not self.connected.is_set():
                return  # the broker resends these on the new connection
            self._out.append(data)
            self.stats["acks"] += len(data) // 4
        if threading.get_ident() != self._io_thread:
            self._wake()  # the I/O thread itself writes the queue after the packets it is parsing

    @property
    def inflight(self) -> int:
        """Our QoS 1 publishes the broker has not acknowledged yet."""
        return len(self._inflight)

    # --- internals --------------------------------------------------------------------------------
    def _allocate_mid(self) -> int:
        for _ in range(65535):
            self._next_mid = self._next_mid % 65535 + 1
            if self._next_mid not in self._inflight and self._next_mid != self._subscribe_mid:
                return self._next_mid
        raise RuntimeError("65535 QoS 1 messages in flight")

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already pending, or closed while stopping

    def _run(self) -> None:
        self._io_thread = threading.get_ident()
        delay = self.reconnect_min_s
        while not self._stopping.is_set():
            try:
                sock, session_present, leftover = self._open()
            except (OSError, ConnectionRefused, ProtocolError) as exc:
                log.warning(
                    "cannot connect to %s:%d: %s; retrying in %.0f s", self.host, self.port, exc, delay
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, self.reconnect_max_s)
                continue
            delay = self.reconnect_min_s
            reason = "stopped"
            self._sock = sock
            try:
                self._serve(sock, session_present, leftover)
            except (OSError, ProtocolError) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                with self._lock:
                    self.connected.clear()
                    self._out.clear()
                    for handle in self._out_done:
                        handle._settle(False)
                    self._out_done.clear()
                self._sock = None
                try:
                    sock.close()
                except OSError:
                    pass
            if self.on_disconnect is not None:
                self._call(self.on_disconnect, reason)
            if not self._stopping.is_set():
                self._stopping.wait(self.reconnect_min_s)

    def _open(self) -> tuple[socket.socket, bool, bytes]:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            sock.sendall(
                connect_packet(
                    self.client_id,
                    clean_session=self.clean_session,
                    keepalive=self.keepalive,
                    will=self.will,
                    username=self.username,
                    password=self.password,
                )
            )
            data = b""
            while len(data) < 4:
                chunk = sock.recv(_RECV_BYTES)
                if not chunk:
                    raise ProtocolError("the broker closed the connection before CONNACK")
                data += chunk
            if data[0] != CONNACK << 4 or data[1] != 2:
                raise ProtocolError(f"expected CONNACK, got packet type {data[0] >> 4}")
            if data[3] != 0:
                reason = _CONNACK_REASONS.get(data[3], f"code {data[3]}")
                raise ConnectionRefused(f"the broker refused the connection: {reason}")
            return sock, bool(data[2] & 1), data[4:]
        except BaseException:
            sock.close()
            raise

    def _serve(self, sock: socket.socket, session_present: bool, leftover: bytes) -> None:
        sock.settimeout(max(1.0, self.keepalive / 2))  # bounds a blocked write; reads follow select
        with self._lock:
            self.connection += 1
            self._subscribe_mid = self._allocate_mid()
            self._out = (
                [subscribe_packet(self._subscribe_mid, self.subscriptions)] if self.subscriptions else []
            )
            self._subscribed = not self.subscriptions
            for out in self._inflight.values():  # resend what the broker never acknowledged
                if out.sent:
                    out.packet = bytes((out.packet[0] | 0x08,)) + out.packet[1:]
                out.sent = True
                self._out.append(out.packet)
            self.connected.set()
        if self.on_connect is not None:
            self._call(self.on_connect, session_present)

        buf = bytearray(max(_RECV_BYTES, 2 * len(leftover)))
        view = memoryview(buf)
        filled = len(leftover)
        view[:filled] = leftover
        last_sent = last_received = time.monotonic()
        # A broker that answers pings but never SUBACKs (an amqtt 0.12 session that failed after its
        # CONNACK) would leave us connected and deaf: give it one keepalive, then connect again.
        subscribe_deadline = last_sent + self.keepalive
        ping_sent = 0.0
        readable: list[Any] = [sock, self._wake_r]
        pending_write = b""
        try:
            while True:
                if filled:
                    used = self._parse(view, filled)
                    if used:
                        rest = bytes(view[used:filled])
                        filled = len(rest)
                        view[:filled] = rest
                    if filled == len(buf):  # one packet larger than the buffer: grow it
                        need = self._packet_size(view, filled)
                        view.release()
                        grown = bytearray(max(need, 2 * len(buf)))
                        grown[:filled] = buf[:filled]
                        buf, view = grown, memoryview(grown)
                with self._lock:
                    if self._out:
                        pending_write += b"".join(self._out)
                        self._out.clear()
                        done, self._out_done = self._out_done, []
                    else:
                        done = []
                stopping = self._stopping.is_set()
                if pending_write:
                    sock.sendall(pending_write)  # the broker always reads; bounded by the timeout
                    pending_write = b""
                    last_sent = time.monotonic()
                    self.stats["writes"] += 1
                    for handle in done:
                        handle._settle(True)
                if stopping:
                    sock.sendall(_DISCONNECT)
                    return
                now = time.monotonic()
                if ping_sent and now - ping_sent > self.keepalive:
                    raise ProtocolError(f"no answer from the broker for {self.keepalive} s")
                if not self._subscribed and now > subscribe_deadline:
                    raise ProtocolError(
                        f"the broker did not acknowledge the subscription in {self.keepalive} s"
                    )
                # Ping when we have been silent (the broker drops a silent client) or the broker has
                # (a dead broker behind a silent network is noticed only by asking).
                if now - last_sent >= self.keepalive or (
                    not ping_sent and now - last_received >= self.keepalive
                ):
                    with self._lock:
                        self._out.append(_PINGREQ)
                    if not ping_sent:
                        ping_sent = now
                    continue
                pending_tls = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
                next_ping = min(last_sent, last_received if not ping_sent else now) + self.keepalive
                if not self._subscribed:
                    next_ping = min(next_ping, subscribe_deadline)
                timeout = 0.0 if pending_tls else max(0.0, next_ping - now)
                ready, _, _ = select.select(readable, [], [], min(timeout, 1.0))
                if self._wake_r in ready:
                    try:
                        self._wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                if sock in ready or pending_tls:
                    n = sock.recv_into(view[filled:])
                    if not n:
                        raise ProtocolError("the broker closed the connection")
                    filled += n
                    self.stats["reads"] += 1
                    last_received = time.monotonic()
                    ping_sent = 0.0  # anything from the broker shows it is alive
        finally:
            view.release()

    def _parse(self, view: memoryview, end: int) -> int:
        """Handle every complete packet in ``view[:end]``; return how many bytes they used."""
        i = 0
        topics = self._topics
        connection = self.connection
        on_message = self.on_message
        received = 0
        try:
            while end - i >= 2:
                first = view[i]
                length = 0
                shift = 0
                j = i + 1
                while True:
                    if j >= end:
                        return i
                    byte = view[j]
                    j += 1
                    length |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise ProtocolError("malformed remaining length")
                stop = j + length
                if stop > end:
                    return i
                kind = first >> 4
                if kind == PUBLISH:
                    qos = (first >> 1) & 3
                    if qos > 1:
                        raise ProtocolError("QoS 2 PUBLISH on a QoS 1 subscription")
                    t = j + 2 + ((view[j] << 8) | view[j + 1])
                    raw = view[j + 2 : t].tobytes()
                    topic = topics.get(raw)
                    if topic is None:
                        topic = raw.decode("utf-8", "replace")
                        if len(topics) > 10_000:
                            topics.clear()
                        topics[raw] = topic
                    if qos:
                        mid = (view[t] << 8) | view[t + 1]
                        t += 2
                    else:
                        mid = 0
                    message = Message(topic, view[t:stop].tobytes(), qos, bool(first & 1), mid, connection)
                    received += 1
                    try:
                        on_message(message)
                    except Exception:
                        log.exception("handling a message on %s failed", topic)
                elif kind == PUBACK:
                    mid = (view[j] << 8) | view[j + 1]
                    with self._lock:
                        out = self._inflight.pop(mid, None)
                    if out is not None:
                        out.handle._settle(True)
                elif kind == SUBACK:
                    if (view[j] << 8) | view[j + 1] == self._subscribe_mid:
                        self._subscribed = True
                    codes = view[j + 2 : stop].tobytes()
                    for (topic_filter, _), code in zip(self.subscriptions, codes, strict=False):
                        if code == 0x80:
                            log.error("the broker refused the subscription to %s", topic_filter)
                elif kind == PINGRESP:
                    pass
                else:
                    raise ProtocolError(f"unexpected packet type {kind} from the broker")
                i = stop
            return i
        finally:
            self.stats["received"] += received

    @staticmethod
    def _packet_size(view: memoryview, end: int) -> int:
        length, shift, j = 0, 0, 1
        while j < end:
            byte = view[j]
            j += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                return j + length
            shift += 7
        return 2 * end

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("MQTT callback %s failed", getattr(fn, "__name__", fn))
