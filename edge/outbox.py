"""What the car sends: numbered events, and the five publishers that run on each MQTT connection.

* :class:`EventLog` numbers events, tells local listeners and queues them for the broker (a bounded
  queue: the oldest event goes first when the broker is away too long).
* :class:`Outbox` holds the per-connection tasks :class:`edge.mqtt.MqttLink` runs while connected:
  the retained model state, the events, telemetry, the live preview and the recorded spool.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from edge.config import CarConfig
from edge.loop import TickResult
from edge.mqtt import SessionTask
from edge.queues import DropQueue
from edge.recorder import FrameSeq, frame_record
from edge.spool import ForwardSpool, SpoolRecord
from schemas.messages import EVENT_ADAPTER, ModelState, Telemetry
from schemas.payloads import encode_frame, encode_jpeg
from schemas.topics import Topics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Preview:
    seq: int
    result: TickResult
    model: str | None


class EventLog:
    """Event numbering and the queue of events waiting for the broker. Event loop thread only."""

    def __init__(self, capacity: Callable[[], int]) -> None:
        self._capacity = capacity
        self._next_seq = 0
        self.queue: deque[tuple[int, bytes]] = deque()
        self.ready = asyncio.Event()
        self.dropped = 0
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    def emit(self, event: dict[str, Any], publish: bool = True) -> tuple[int, bytes] | None:
        """Number an event, tell local listeners, and (with ``publish``) queue it for the broker.
        Returns ``(seq, payload)``, or None for an invalid event."""
        event = dict(event)
        event["seq"] = self._next_seq
        event.setdefault("ts", time.time())
        try:
            validated = EVENT_ADAPTER.validate_python(event)
        except Exception as exc:
            log.error("dropping an invalid event %s: %s", event.get("type"), exc)
            return None
        self._next_seq += 1
        payload = validated.to_json()
        if publish:
            self.enqueue(event["seq"], payload)
        for listener in list(self.listeners):
            try:
                listener(json.loads(payload))
            except Exception:
                log.exception("event listener failed")
        return event["seq"], payload

    def enqueue(self, seq: int, payload: bytes) -> None:
        if len(self.queue) >= self._capacity():
            self.queue.popleft()
            self.dropped += 1
        self.queue.append((seq, payload))
        self.ready.set()


class Outbox:
    """The publishers of one car. ``config`` is read on every use: run-time settings change it."""

    def __init__(
        self,
        car: str,
        topics: Topics,
        config: Callable[[], CarConfig],
        events: EventLog,
        *,
        model_state: Callable[[], ModelState],
        detector_state: Callable[[], ModelState | None] | None = None,
        telemetry: Callable[[], Telemetry],
        spool: Callable[[], ForwardSpool],
    ) -> None:
        self.car = car
        self.topics = topics
        self._config = config
        self.events = events
        self._model_state = model_state
        self._detector_state = detector_state
        self._telemetry = telemetry
        self._spool = spool
        self.frame_seq = FrameSeq()
        self.preview_queue: DropQueue[Preview] = DropQueue(2, "preview")
        self._last_preview_ns = 0
        self.spool_data = asyncio.Event()

    def session_tasks(self) -> list[SessionTask]:
        return [
            self._publish_model_state,
            self._publish_events,
            self._publish_telemetry,
            self._publish_preview,
            self._send_spool,
        ]

    def offer_preview(self, result: TickResult, recording: bool) -> None:
        """Keep a frame for the live preview at ``publish.preview_hz`` (control thread)."""
        hz = self._config().publish.preview_hz
        if (
            hz > 0
            and result.frame is not None
            and result.new_frame
            and not recording
            and result.t_ns - self._last_preview_ns >= 1e9 / hz
        ):
            self._last_preview_ns = result.t_ns
            self.preview_queue.put(Preview(self.frame_seq.next(), result, result.pilot))

    async def _publish_model_state(self, client: aiomqtt.Client) -> None:
        topic = self.topics.model_state(self.car)
        await client.publish(topic, self._model_state().to_json(), qos=1, retain=True)
        detector = self._detector_state() if self._detector_state is not None else None
        if detector is not None:
            await client.publish(self.topics.detector_state(self.car), detector.to_json(), qos=1, retain=True)

    async def _publish_events(self, client: aiomqtt.Client) -> None:
        topic = self.topics.events(self.car)
        timeout = self._config().publish.publish_timeout_s
        queue = self.events.queue
        while True:
            while queue:
                seq, payload = queue[0]
                await client.publish(topic, payload, qos=1, timeout=timeout)
                if queue and queue[0][0] == seq:
                    queue.popleft()
            self.events.ready.clear()
            await self.events.ready.wait()

    async def _publish_telemetry(self, client: aiomqtt.Client) -> None:
        topic = self.topics.telemetry(self.car)
        while True:
            await asyncio.sleep(1.0 / self._config().publish.telemetry_hz)
            await client.publish(topic, self._telemetry().to_json(), qos=0, timeout=5.0)

    async def _publish_preview(self, client: aiomqtt.Client) -> None:
        topic = self.topics.frames(self.car)
        self.preview_queue.clear()  # what waited while offline is stale
        session = f"live-{self.car}"
        while True:
            item = await self.preview_queue.async_get()
            frame = item.result.frame
            assert frame is not None
            record = frame_record(
                self.car, session, item.seq, item.result, item.model, {"recorded": False, "preview": True}
            )
            quality = self._config().publish.preview_jpeg_quality
            jpeg = await asyncio.to_thread(encode_jpeg, frame.image, quality)
            await client.publish(topic, encode_frame(record, jpeg), qos=0, timeout=5.0)

    async def _send_spool(self, client: aiomqtt.Client) -> None:
        """Publish the spool in order with QoS 1, a window of ``recorder.inflight`` unacknowledged
        frames; a frame leaves the spool only once the broker acknowledged it (and every frame
        before it). Any failure tears down the connection; the next one starts again at the head."""
        inflight: deque[tuple[SpoolRecord, asyncio.Task[None]]] = deque()
        try:
            await self._spool_window(client, inflight)
        finally:
            for _, task in inflight:
                task.cancel()
            for _, task in inflight:
                with contextlib.suppress(BaseException):
                    await task

    async def _spool_window(
        self, client: aiomqtt.Client, inflight: deque[tuple[SpoolRecord, asyncio.Task[None]]]
    ) -> None:
        spool = self._spool()
        topic = self.topics.frames(self.car)
        window = self._config().recorder.inflight
        timeout = self._config().publish.publish_timeout_s
        position = spool.head
        while True:
            if len(inflight) < window:
                self.spool_data.clear()
                records = await asyncio.to_thread(spool.read, position, window - len(inflight))
                for record in records:
                    task = asyncio.create_task(client.publish(topic, record.data, qos=1, timeout=timeout))
                    inflight.append((record, task))
                    position = record.next
            if not inflight:
                await self.spool_data.wait()
                continue
            oldest = inflight[0][1]
            if len(inflight) < window:
                waiter = asyncio.create_task(self.spool_data.wait())
                await asyncio.wait({oldest, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            else:
                await asyncio.wait({oldest})
            while inflight and inflight[0][1].done():
                record, task = inflight.popleft()
                task.result()  # raises on failure: reconnect, resend from the head
                spool.ack(record)
