"""A small car for hub tests, built only on ``schemas``: births and deaths with bdseq, telemetry,
events and QoS 1 frame envelopes with seq, published with paho through a real broker."""

import io
import threading
import time
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from schemas.messages import CarStatus, FrameRecord, RecordingEvent, Telemetry
from schemas.mqtt_url import BrokerUrl
from schemas.payloads import encode_frame
from schemas.topics import Topics

_JPEG_CACHE: dict[tuple[int, int], bytes] = {}


def make_jpeg(target_bytes: int = 10_000, seed: int = 0) -> bytes:
    """A real JPEG (random texture) of about ``target_bytes``."""
    from PIL import Image

    key = (target_bytes, seed)
    if key in _JPEG_CACHE:
        return _JPEG_CACHE[key]
    rng = np.random.default_rng(seed)
    side = 16
    best = b""
    while True:
        img = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=75)
        data = buf.getvalue()
        if len(data) > target_bytes:
            break
        best = data
        side += 8
    best = best or data
    _JPEG_CACHE[key] = best
    return best


class FakeCar:
    def __init__(
        self,
        url: str,
        car: str = "car-1",
        *,
        prefix: str = "paddock",
        bdseq: int = 0,
        jpeg: bytes | None = None,
        max_inflight: int = 100,
    ) -> None:
        self.url = BrokerUrl.parse(url)
        self.car = car
        self.topics = Topics(prefix)
        self.bdseq = bdseq
        self.seq = 0  # frames seq, per boot
        self.telemetry_seq = 0
        self.event_seq = 0
        self.jpeg = jpeg if jpeg is not None else make_jpeg(2_000, seed=hash(car) % 1000)
        self.connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"fake-{car}-{bdseq}", protocol=paho.MQTTv311
        )
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = lambda *_a: self.connected.set()
        self.client.on_disconnect = lambda *_a: self.connected.clear()

    # --- presence -------------------------------------------------------------------------------
    def connect(self, birth: bool = True, **birth_fields: Any) -> "FakeCar":
        death = CarStatus(state="offline", bdseq=self.bdseq, ts=time.time())
        self.client.will_set(self.topics.car_status(self.car), death.to_json(), qos=1, retain=True)
        self.client.connect(self.url.host, self.url.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise TimeoutError(f"{self.car} could not connect to {self.url}")
        if birth:
            self.birth(**birth_fields)
        return self

    def birth(self, **fields: Any) -> None:
        status = CarStatus(state="online", bdseq=self.bdseq, ts=time.time(), sw_version="fake-1", **fields)
        self.publish(self.topics.car_status(self.car), status.to_json(), qos=1, retain=True)

    def death(self, bdseq: int | None = None) -> None:
        status = CarStatus(state="offline", bdseq=self.bdseq if bdseq is None else bdseq, ts=time.time())
        self.publish(self.topics.car_status(self.car), status.to_json(), qos=1, retain=True)

    def close(self, death: bool = True) -> None:
        if death and self.connected.is_set():
            self.death()
        self.client.disconnect()
        self.client.loop_stop()

    # --- streams ------------------------------------------------------------------------------
    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, wait: bool = True
    ) -> Any:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if wait and qos > 0:
            info.wait_for_publish(10)
        return info

    def telemetry(self, **fields: Any) -> Telemetry:
        msg = Telemetry(
            seq=self.telemetry_seq,
            ts=fields.pop("ts", time.time()),
            mode=fields.pop("mode", "manual"),
            **fields,
        )
        self.telemetry_seq += 1
        self.publish(self.topics.telemetry(self.car), msg.to_json(), qos=0)
        return msg

    def event(self, event: Any) -> None:
        event = event.model_copy(update={"seq": self.event_seq})
        self.event_seq += 1
        self.publish(self.topics.events(self.car), event.to_json(), qos=1)

    def frame_bytes(self, session: str, seq: int, **fields: Any) -> bytes:
        record = FrameRecord(
            car=self.car,
            session=session,
            seq=seq,
            t_capture_ns=fields.pop("t_capture_ns", time.time_ns()),
            steering=fields.pop("steering", ((seq % 21) - 10) / 10),
            throttle=fields.pop("throttle", 0.4),
            mode=fields.pop("mode", "manual"),
            **fields,
        )
        return encode_frame(record, self.jpeg)

    def frame(self, session: str, qos: int = 1, wait: bool = False, **fields: Any) -> int:
        """One frame; QoS 0 frames are previews and say so in the header (``preview: true``)."""
        if qos == 0:
            fields.setdefault("preview", True)
        seq = self.seq
        self.seq += 1
        self.publish(
            self.topics.frames(self.car), self.frame_bytes(session, seq, **fields), qos=qos, wait=wait
        )
        return seq

    def record(
        self, session: str, n: int, *, rate_hz: float | None = None, skip: set[int] | None = None
    ) -> list[int]:
        """Publish ``n`` QoS 1 frames (seqs in ``skip`` are counted but never sent); wait for every ack."""
        infos = []
        sent = []
        period = 1.0 / rate_hz if rate_hz else 0.0
        t0 = time.monotonic()
        for i in range(n):
            seq = self.seq
            self.seq += 1
            if skip and seq in skip:
                continue
            infos.append(
                self.publish(self.topics.frames(self.car), self.frame_bytes(session, seq), qos=1, wait=False)
            )
            sent.append(seq)
            if period:
                delay = t0 + (i + 1) * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        for info in infos:
            info.wait_for_publish(60)
        return sent

    def start_recording(self, session: str) -> None:
        self.event(RecordingEvent(type="recording_started", session=session, ts=time.time()))

    def stop_recording(self, session: str, frames: int = 0) -> None:
        self.event(RecordingEvent(type="recording_stopped", session=session, frames=frames, ts=time.time()))
