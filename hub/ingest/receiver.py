"""MQTT ingest: one subscriber with a persistent session and QoS 1, acknowledging only what is safe.

The MQTT thread (:mod:`hub.ingest.mqtt`) does as little as possible per message: parse the topic (cached),
check a frame's envelope, hand it to the spool, and return. Frames are acknowledged when their spool batch
is fsynced; births, deaths, events, model states and job reports when the catalog has them
(a control thread); telemetry (QoS 0) goes to the sinks without waiting. Acks leave in arrival
order (:mod:`hub.ingest.acks`). A malformed message is counted, logged with its topic and reason, and
acknowledged so the broker does not resend it; it never stops ingest.
"""

import json
import logging
import queue
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.config import HubConfig
from hub.ingest.acks import AckSequencer, AckToken
from hub.ingest.mqtt import Message, MqttClient, Will
from hub.storage.catalog import Catalog
from hub.storage.spool import CONTROL, WriteAheadSpool
from hub.telemetry.metrics import IngestCounters
from hub.telemetry.sinks import EventRecord, Fanout, JobProgressRecord, StatusRecord, TelemetryRecord
from schemas import __version__
from schemas.envelope import (
    DEFAULT_MAX_HEADER,
    MAGIC,
    PREAMBLE_SIZE,
    BadMagic,
    EnvelopeTooLarge,
    HeaderNotJson,
    HeaderNotObject,
    HeaderNotUtf8,
    HeaderTooLarge,
    Truncated,
)
from schemas.errors import ContractError
from schemas.messages import (
    CarStatus,
    CommandResponse,
    EStop,
    Event,
    FrameRecord,
    HubStatus,
    JobProgress,
    JobResult,
    ModelState,
    RecordingEvent,
    Telemetry,
    parse_event,
)
from schemas.payloads import decode_frame, frame_header
from schemas.topics import ParsedTopic, TopicKind, Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrameToken:
    ack: AckToken | None
    car: str


class _RateLimitedLog:
    """Log the first few malformed messages per minute, then only count them."""

    def __init__(self, per_minute: int = 20) -> None:
        self.per_minute = per_minute
        self.window = 0.0
        self.count = 0
        self.suppressed = 0

    def warning(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.window >= 60:
            if self.suppressed:
                log.warning("%d more malformed messages in the last minute (not logged)", self.suppressed)
            self.window, self.count, self.suppressed = now, 0, 0
        if self.count < self.per_minute:
            self.count += 1
            log.warning(msg, *args)
        else:
            self.suppressed += 1


class LatestPerCar:
    """The latest preview and telemetry of each car, bounded in bytes and in age (thread-safe).

    The least recently updated entry goes first when ``max_bytes`` is reached, and entries expire
    after ``ttl_s``: a car id someone invented is forgotten, whatever it sent.
    """

    OVERHEAD = 512  # bytes per entry besides its payload: keys, dicts, the cache's own bookkeeping

    def __init__(self, max_bytes: int, ttl_s: float) -> None:
        from cachetools import TTLCache

        self._cache: TTLCache[tuple[str, str], tuple[Any, int]] = TTLCache(
            maxsize=max_bytes, ttl=ttl_s, getsizeof=lambda item: item[1]
        )
        self._lock = threading.Lock()

    def put(self, key: tuple[str, str], value: Any, size: int) -> None:
        cost = size + self.OVERHEAD
        with self._lock:
            if cost > self._cache.maxsize:
                self._cache.pop(key, None)  # larger than the whole budget: keep nothing stale either
                return
            self._cache.pop(key, None)  # re-inserted: counts as the most recent
            self._cache[key] = (value, cost)

    def get(self, key: tuple[str, str]) -> Any:
        with self._lock:
            item = self._cache.get(key)
        return None if item is None else item[0]

    @property
    def bytes(self) -> int:
        with self._lock:
            self._cache.expire()
            return int(self._cache.currsize)

    def __len__(self) -> int:
        with self._lock:
            self._cache.expire()
            return len(self._cache)


class Ingest:
    def __init__(
        self,
        config: HubConfig,
        topics: Topics,
        spool: WriteAheadSpool,
        catalog: Catalog,
        counters: IngestCounters,
        sinks: Fanout,
        api_url: Callable[[], str | None],
    ) -> None:
        self.config = config
        self.topics = topics
        self.spool = spool
        self.catalog = catalog
        self.counters = counters
        self.sinks = sinks
        self.api_url = api_url
        self.connected = threading.Event()
        self.connections = 0
        self.on_connect_hooks: list[Callable[[], None]] = []
        self.latest = LatestPerCar(
            int(config.shards.preview_cache_mb * 1024 * 1024), config.shards.preview_ttl_s
        )
        # called on the ingest thread with each valid telemetry message (the fleet monitor); must not block
        self.telemetry_observers: list[Callable[[str, Telemetry], None]] = []
        self.event_observers: list[Callable[[str, Event], None]] = []  # the MLOps policies
        self.job_observers: list[Callable[[str, JobResult], None]] = []  # job id, its result
        self.max_frame = int(config.shards.max_frame_mb * 1024 * 1024)
        self._topic_cache: OrderedDict[str, ParsedTopic | None] = OrderedDict()
        self._control: queue.Queue[tuple[ParsedTopic, str, bytes, AckToken | None] | None] = queue.Queue()
        self._control_thread = threading.Thread(target=self._control_loop, name="hub-control", daemon=True)
        self._responses: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._responses_cond = threading.Condition()
        self._bad = _RateLimitedLog()
        self._closing = False
        self._estop: EStop | None = None  # the fleet e-stop as the broker holds it (None: never set)
        self._estop_lock = threading.Lock()
        self.client = self._make_client()
        self.acks = AckSequencer(self.client.ack)
        spool.on_durable = self._on_durable

    # --- setup --------------------------------------------------------------------------------
    def _make_client(self) -> MqttClient:
        cfg = self.config.mqtt
        broker = cfg.broker
        tls = cfg.tls_context()
        t = self.topics
        offline = HubStatus(state="offline", version=__version__, ts=time.time()).to_json()
        return MqttClient(
            broker.host,
            broker.port,
            client_id=cfg.client_id,
            clean_session=False,
            keepalive=cfg.keepalive_s,
            will=Will(t.hub_status(), offline, qos=1, retain=True),
            username=broker.username,
            password=cfg.password(),
            tls=tls,
            reconnect_min_s=cfg.reconnect_min_s,
            reconnect_max_s=cfg.reconnect_max_s,
            subscriptions=[
                (t.all_cars("frames"), 1),
                (t.all_cars("status"), 1),
                (t.all_cars("telemetry"), 0),
                (t.all_cars("events"), 1),
                (t.all_cars("model/state"), 1),
                (t.all_cars("detector/state"), 1),
                (t.all_job_updates(), 1),
                (t.all_command_responses(), 1),
                (t.fleet_estop(), 1),  # retained: a restarted hub learns the e-stop from the broker
            ],
            on_message=self._on_message,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
        )

    def start(self) -> None:
        self._control_thread.start()
        self.client.start()

    def refuse_messages(self) -> None:
        """Drop every message from now on (unacknowledged, so the broker keeps it for next time)."""
        self._closing = True

    @property
    def is_connected(self) -> bool:
        return self.connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected to the broker; False after ``timeout`` seconds."""
        return self.connected.wait(timeout)

    @property
    def ack_outstanding(self) -> int:
        """QoS 1 messages received and not yet acknowledged."""
        return self.acks.outstanding

    def telemetry_of(self, car: str) -> dict[str, Any] | None:
        """The car's last telemetry message, as received (None once forgotten)."""
        found = self.latest.get(("telemetry", car))
        return found if isinstance(found, dict) else None

    def preview_of(self, car: str) -> bytes | None:
        """The car's latest preview (QoS 0) frame envelope (None once forgotten)."""
        found = self.latest.get(("preview", car))
        return found if isinstance(found, bytes) else None

    @property
    def estop(self) -> EStop | None:
        """The fleet e-stop: the retained ``fleet/estop`` message, or what this hub set since."""
        return self._estop

    def note_estop(self, estop: EStop | None) -> None:
        """Take ``estop`` unless what is known is newer (an echo of an earlier message arriving late).
        ``None`` (the retained message cleared) is always taken."""
        with self._estop_lock:
            known = self._estop
            if estop is None or known is None or estop.ts >= known.ts:
                self._estop = estop

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, acknowledge what is safe, say goodbye, disconnect."""
        self._closing = True
        self._control.put(None)
        self._control_thread.join(timeout)
        if self.connected.is_set():
            offline = HubStatus(state="offline", version=__version__, ts=time.time()).to_json()
            self.client.publish(self.topics.hub_status(), offline, qos=1, retain=True).wait(2.0)
        self.client.stop(timeout)

    # --- MQTT callbacks (the client's thread) -------------------------------------------------
    def _on_connect(self, session_present: bool) -> None:
        self.acks.reset(self.client.connection)
        online = HubStatus(
            state="online", version=__version__, api_url=self.api_url(), ts=time.time()
        ).to_json()
        self.client.publish(self.topics.hub_status(), online, qos=1, retain=True)
        self.connections += 1
        self.connected.set()
        log.info(
            "connected to %s (session %s)", self.config.mqtt.broker, "resumed" if session_present else "new"
        )
        for hook in self.on_connect_hooks:
            threading.Thread(target=_safe(hook), name="hub-on-connect", daemon=True).start()

    def _on_disconnect(self, reason: str) -> None:
        self.connected.clear()
        if not self._closing:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _parse_topic(self, topic: str) -> ParsedTopic | None:
        cache = self._topic_cache
        try:
            return cache[topic]
        except KeyError:
            pass
        try:
            parsed: ParsedTopic | None = self.topics.parse(topic)
        except ContractError:
            parsed = None
        cache[topic] = parsed
        if len(cache) > 10_000:
            cache.popitem(last=False)
        return parsed

    def _on_message(self, msg: Message) -> None:
        if self._closing:
            return  # not acknowledged: the broker resends it to the next hub session
        qos = msg.qos
        token = self.acks.received(msg.mid) if qos > 0 else None
        topic = msg.topic
        parsed = self._parse_topic(topic)
        payload = msg.payload
        if parsed is None:
            self._malformed(None, "topic", "not a paddock topic", topic)
            self._ack(token)
            return
        kind = parsed.kind
        if kind is TopicKind.FRAMES:
            self._on_frame(parsed.car or "", qos, payload, token, topic, msg.retain)
        elif kind is TopicKind.EVENTS and b"recording_stopped" in payload:
            self._on_recording_stopped(parsed.car or "", payload)
            self._control.put((parsed, topic, payload, token))
        elif kind is TopicKind.TELEMETRY:
            self._on_telemetry(parsed.car or "", payload, topic)
            self._ack(token)
        elif kind is TopicKind.FLEET_ESTOP:
            self._on_estop(payload, topic)
            self._ack(token)
        elif kind in (
            TopicKind.CAR_STATUS,
            TopicKind.EVENTS,
            TopicKind.MODEL_STATE,
            TopicKind.DETECTOR_STATE,
            TopicKind.JOB_PROGRESS,
            TopicKind.JOB_RESULT,
            TopicKind.COMMAND_RESPONSE,
        ):
            self._control.put((parsed, topic, payload, token))
        else:
            self._ack(token)

    def _on_frame(
        self, car: str, qos: int, payload: bytes, token: AckToken | None, topic: str, retained: bool
    ) -> None:
        counters = self.counters.car(car)
        if retained:  # a stale frame someone left retained: not part of any recording
            self._malformed(car, "frame", "retained frames are never recorded", topic, "retained")
            self._ack(token)
            return
        if qos == 0 and not self.config.shards.record_preview:
            counters.preview_frames += 1
            self.latest.put(("preview", car), payload, len(payload))
            return
        try:
            record = check_frame(payload, car, self.max_frame)
        except ContractError as exc:
            self._malformed(car, "frame", str(exc), topic, _frame_reason(exc))
            if token is not None:  # acknowledged in order with the frames before it
                self.spool.append(None, token)
            return
        if record.preview and not self.config.shards.record_preview:
            # A car may mark preview frames in the header: brokers that deliver at the
            # subscription's QoS (amqtt does) make QoS alone an unreliable sign of recording.
            counters.preview_frames += 1
            self.latest.put(("preview", car), payload, len(payload))
            if token is not None:
                self.spool.append(None, token)
            return
        counters.frames_received += 1
        self.spool.append(payload, FrameToken(token, car))

    def _on_recording_stopped(self, car: str, payload: bytes) -> None:
        """Close the session in the spool's order: after every frame that came before this event."""
        try:
            event = parse_event(payload)
        except ContractError:
            return  # the control thread counts it as malformed
        if isinstance(event, RecordingEvent) and event.type == "recording_stopped":
            self.spool.append(CONTROL + json.dumps({"close": [car, event.session]}).encode(), None)

    def _on_estop(self, payload: bytes, topic: str) -> None:
        if not payload:
            self.note_estop(None)
            return
        try:
            self.note_estop(EStop.from_json(payload))
        except ContractError as exc:
            self._malformed(None, "estop", str(exc), topic)

    def _on_telemetry(self, car: str, payload: bytes, topic: str) -> None:
        try:
            msg = Telemetry.from_json(payload)
        except ContractError as exc:
            self._malformed(car, "telemetry", str(exc), topic)
            return
        self.counters.car(car).telemetry += 1
        self.latest.put(("telemetry", car), msg.to_dict(), len(payload))
        self.sinks.put(TelemetryRecord(car, msg))
        for observe in self.telemetry_observers:
            try:
                observe(car, msg)
            except Exception:
                log.exception("telemetry observer failed")

    def _on_durable(self, tokens: list[Any]) -> None:
        """Spool writer thread: a batch is on disk; count it and release its acks."""
        acks: list[AckToken] = []
        counters = self.counters
        for t in tokens:
            if isinstance(t, FrameToken):
                counters.car(t.car).frames_persisted += 1
                if t.ack is not None:
                    acks.append(t.ack)
            elif isinstance(t, AckToken):
                acks.append(t)
        if acks:
            self.acks.done_many(acks)

    def _ack(self, token: AckToken | None) -> None:
        if token is not None:
            self.acks.done(token)

    def _malformed(
        self, car: str | None, kind: str, reason: str, topic: str, label: str | None = None
    ) -> None:
        short = label or reason.split(":", 1)[0]
        self.counters.add_malformed(car, kind, short[:60])
        self._bad.warning("malformed %s on %s: %s", kind, topic, reason)

    # --- control thread -----------------------------------------------------------------------
    def _control_loop(self) -> None:
        while True:
            item = self._control.get()
            if item is None:
                return
            parsed, topic, payload, token = item
            try:
                self._handle_control(parsed, payload)
            except ContractError as exc:
                self._malformed(parsed.car, parsed.kind.value, str(exc), topic)
            except Exception:  # a catalog failure must not stop the control thread
                log.exception("handling %s on %s failed", parsed.kind.value, topic)
            self._ack(token)

    def _handle_control(self, parsed: ParsedTopic, payload: bytes) -> None:
        kind = parsed.kind
        car = parsed.car or ""
        if not payload:
            return  # a retained message being cleared
        if kind is TopicKind.CAR_STATUS:
            status = CarStatus.from_json(payload)
            if self.catalog.apply_status(car, status):
                self.sinks.put(StatusRecord(car, status))
            else:
                self.counters.stale_deaths += 1
                log.info(
                    "ignored a stale death of %s (bdseq %d older than the current birth)", car, status.bdseq
                )
        elif kind is TopicKind.EVENTS:
            event = parse_event(payload)
            self.counters.car(car).events += 1
            session = getattr(event, "session", None)
            self.sinks.put(EventRecord(car, event, session))
            for observe in self.event_observers:
                try:
                    observe(car, event)
                except Exception:
                    log.exception("event observer failed")
        elif kind is TopicKind.MODEL_STATE or kind is TopicKind.DETECTOR_STATE:
            state = ModelState.from_json(payload)
            slot = "detector" if kind is TopicKind.DETECTOR_STATE else "pilot"
            self.catalog.set_model_state(car, state.to_dict(), slot)
        elif kind in (TopicKind.JOB_PROGRESS, TopicKind.JOB_RESULT) and not self._taken_by(parsed):
            return
        elif kind is TopicKind.JOB_PROGRESS:
            progress = JobProgress.from_json(payload)
            self.catalog.job_progress(
                parsed.job or progress.job, parsed.job_kind or progress.kind, progress.to_dict()
            )
            self.sinks.put(JobProgressRecord(progress))
        elif kind is TopicKind.JOB_RESULT:
            result = JobResult.from_json(payload)
            job = parsed.job or result.job
            self.catalog.job_result(job, parsed.job_kind or result.kind, result.to_dict())
            self._record_evaluation(job, result)
            for notify in self.job_observers:
                try:
                    notify(job, result)
                except Exception:
                    log.exception("job observer failed")
        elif kind is TopicKind.COMMAND_RESPONSE:
            response = CommandResponse.from_json(payload)
            if response.transaction:
                with self._responses_cond:
                    self._responses[response.transaction] = {
                        "car": car,
                        "command": parsed.command,
                        **response.to_dict(),
                    }
                    while len(self._responses) > 1000:
                        self._responses.popitem(last=False)
                    self._responses_cond.notify_all()

    def _taken_by(self, parsed: ParsedTopic) -> bool:
        """Whether the trainer reporting on a job took it (the first to report on a job takes it)."""
        assert parsed.job is not None and parsed.job_kind is not None
        holder = self.catalog.claim_job(parsed.job, parsed.job_kind, parsed.trainer)
        if holder is None or holder == parsed.trainer:
            return True
        self.counters.add_malformed(None, "job", "not the trainer that took the job")
        log.warning(
            "refused a %s of job %s from %s: trainer %s took it",
            parsed.kind.value,
            parsed.job,
            parsed.trainer or "an unnamed client",
            holder,
        )
        return False

    def _record_evaluation(self, job: str, result: JobResult) -> None:
        if result.kind != "evaluate" or result.status != "succeeded":
            return
        model = result.model
        if model is None:
            row = self.catalog.get_job(job)
            params = ((row or {}).get("request") or {}).get("params") or {}
            if "model_name" in params and "model_version" in params:
                name, version = params["model_name"], params["model_version"]
            else:
                return
        else:
            name, version = model.name, model.version
        self.catalog.add_evaluation(name, version, job, result.metrics, result.artifacts)

    # --- publishing ---------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Publish and wait for the broker's ack; False if it did not come (not connected, timeout).

        A QoS 1 message that could not be sent now stays queued in the client and goes out on the
        next connection.
        """
        handle = self.client.publish(topic, payload, qos=qos, retain=retain)
        return handle.wait(self.config.mqtt.publish_timeout_s)

    def wait_response(self, transaction: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self._responses_cond:
            while transaction not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._responses_cond.wait(left)
            return self._responses[transaction]


class _FrameDefect(ContractError):
    label = "invalid"


class _TooLarge(_FrameDefect):
    label = "too large"


class _CarMismatch(_FrameDefect):
    label = "car mismatch"


class _NotJpeg(_FrameDefect):
    label = "not a jpeg"


_ENVELOPE_LABELS: list[tuple[type[Exception], str]] = [
    (BadMagic, "bad magic"),
    (Truncated, "truncated"),
    (HeaderTooLarge, "too large"),
    (EnvelopeTooLarge, "too large"),
    (HeaderNotUtf8, "header not utf-8"),
    (HeaderNotJson, "header not json"),
    (HeaderNotObject, "header not an object"),
]


_PREAMBLE = struct.Struct("<4sI")


def check_frame(payload: bytes, car: str, max_total: int) -> FrameRecord:
    """Validate a frame envelope as ``schemas.payloads.decode_frame`` does, without copying the
    image and in one pass of pydantic's JSON parser (this runs for every frame, on the network
    thread). Raises the same errors; also checks the car against the topic and the JPEG marker."""
    n = len(payload)
    if n > max_total:
        raise _TooLarge(f"frame of {n} bytes exceeds {max_total}")
    if n < 4:
        raise Truncated(f"envelope of {n} bytes is shorter than its magic")
    if n < PREAMBLE_SIZE:
        if payload[:4] != MAGIC:
            raise BadMagic(f"envelope starts with {payload[:4]!r}, expected {MAGIC!r}")
        raise Truncated(f"envelope of {n} bytes is shorter than its {PREAMBLE_SIZE}-byte preamble")
    magic, head_len = _PREAMBLE.unpack_from(payload)
    if magic != MAGIC:
        raise BadMagic(f"envelope starts with {magic!r}, expected {MAGIC!r}")
    if head_len > DEFAULT_MAX_HEADER:
        raise HeaderTooLarge(f"header length {head_len} exceeds the maximum of {DEFAULT_MAX_HEADER}")
    end = PREAMBLE_SIZE + head_len
    if end > n:
        raise Truncated(f"header length {head_len} runs past the end of a {n}-byte envelope")
    header = payload[PREAMBLE_SIZE:end]
    if b"NaN" in header or b"Infinity" in header:
        decode_frame(payload, max_total=max_total)  # strict JSON refuses NaN literals: the slow path
    record = frame_header(header)
    if record.car != car:
        raise _CarMismatch(f"header car {record.car!r} does not match the topic's {car!r}")
    if payload[end : end + 2] != b"\xff\xd8":
        raise _NotJpeg("payload is not a JPEG")
    return record


def _frame_reason(exc: ContractError) -> str:
    """A short, bounded label for a frame's defect (for metrics; the full reason is logged)."""
    if isinstance(exc, _FrameDefect):
        return exc.label
    for cls, label in _ENVELOPE_LABELS:
        if isinstance(exc, cls):
            return label
    return "invalid frame record"


def _safe(fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:
            log.exception("on-connect hook failed")

    return run
