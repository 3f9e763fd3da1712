"""The recorder: while recording, every new camera frame and the action applied with it go to the
on-disk spool as a frame envelope (FrameRecord header + JPEG), from where the sender publishes
them with QoS 1. Where the body has a lidar, the scan of the frame's tick travels in the same
header (``lidar``), so scans are exactly as loss-free as frames; the hub writes them into the
session's ``lidar.csv``.

The control thread only offers frames to a bounded queue (never blocks); a writer thread encodes
the JPEG and appends to the spool. Sequence numbers are given on the control thread, so a frame
dropped anywhere shows up as a gap the hub counts. A full spool stops recording with a
``recording_stopped`` event whose reason says so.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.loop import TickResult
from edge.queues import DropQueue
from edge.spool import ForwardSpool, SpoolFull
from firmware.car_body import PendingScan
from schemas.messages import FrameRecord, LidarRecord
from schemas.payloads import encode_frame, encode_jpeg

log = logging.getLogger(__name__)


def new_session_id(prefix: str = "") -> str:
    t = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(t)) + f"-{int(t * 1000) % 1000:03d}"
    return f"{prefix}{stamp}"


def frame_record(
    car: str, session: str, seq: int, result: TickResult, model: str | None, extra: dict[str, Any]
) -> FrameRecord:
    """The header of one frame: the image's capture time and the action applied with it."""
    frame = result.frame
    assert frame is not None
    fields: dict[str, Any] = {
        "car": car,
        "session": session,
        "seq": seq,
        "t_capture_ns": frame.t_capture_ns,
        "steering": result.steering,
        "throttle": result.throttle,
        "mode": result.mode,
        "model": model,
        "width": int(frame.image.shape[1]),
        "height": int(frame.image.shape[0]),
        "tick": result.tick,
        "frame_index": frame.index,
        "ts": time.time(),
    }
    if result.body is not None:
        b = result.body
        fields["speed"] = b.speed
        for key in ("lap", "progress", "off_track"):
            value = getattr(b, key)
            if value is not None:
                fields[key] = value
        fields.update(b.extra)
    if result.inference_ms is not None:
        fields["inference_ms"] = round(result.inference_ms, 3)
    if result.decision is not None and "label" in result.decision.info:
        fields["label"] = result.decision.info["label"]  # the teacher's action (noise injection)
    fields.update(extra)
    return FrameRecord.model_validate({k: v for k, v in fields.items() if v is not None})


def frame_envelope(
    car: str,
    session: str,
    seq: int,
    result: TickResult,
    model: str | None,
    extra: dict[str, Any],
    quality: int,
) -> bytes:
    """One frame as it goes into the spool: its header (:func:`frame_record`) and the JPEG."""
    frame = result.frame
    assert frame is not None
    record = frame_record(car, session, seq, result, model, extra)
    return encode_frame(record, encode_jpeg(frame.image, quality))


def lidar_fields(scan: PendingScan) -> dict[str, Any]:
    """The ``lidar`` field of a frame record: the scan worked out now (off the control thread),
    validated once here (the record takes the model as it is)."""
    s = scan()
    record = LidarRecord(
        t_capture_ns=s.t_ns,
        ranges=[round(float(r), 3) for r in s.ranges],
        min_range=s.min_range,
        max_range=s.max_range,
        fov_deg=s.fov_deg,
    )
    return {"lidar": record}


@dataclass(slots=True)
class _Item:
    seq: int
    session: str
    result: TickResult
    model: str | None
    extra: dict[str, Any]
    scan: PendingScan | None = None


class FrameSeq:
    """The per-boot sequence of the frames stream (recorded and preview frames share it)."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            seq = self._next
            self._next += 1
        return seq

    def reserve(self, n: int) -> range:
        """``n`` consecutive seqs (a feedback capture: its session must show no gap)."""
        with self._lock:
            first = self._next
            self._next += n
        return range(first, first + n)


class Recorder:
    def __init__(
        self,
        car: str,
        spool: ForwardSpool,
        seq: FrameSeq,
        *,
        jpeg_quality: int = 90,
        queue_frames: int = 256,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        lidar: Callable[[], PendingScan | None] | None = None,
    ) -> None:
        self.car = car
        self.lidar = lidar  # the body's lidar_scan, where it has a lidar
        self.spool = spool
        self.seq = seq
        self.jpeg_quality = jpeg_quality
        self.queue: DropQueue[_Item] = DropQueue(queue_frames, "recorder")
        self.on_event = on_event or (lambda e: None)
        self._session: str | None = None
        self._frames = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.written = 0
        self.scans = 0  # lidar scans spooled with their frames
        self.dropped_full = 0
        self.pending = 0  # frames handed to the writer thread and not yet spooled (or given up)
        self.extra: dict[str, Any] = {}

    # --- sessions (any thread) ------------------------------------------------------------------
    @property
    def session(self) -> str | None:
        return self._session

    @property
    def recording(self) -> bool:
        return self._session is not None

    def start_session(self, session: str | None = None) -> str:
        with self._lock:
            if self._session is not None:
                return self._session
            self._session = session or new_session_id()
            self._frames = 0
            sid = self._session
        self.on_event({"type": "recording_started", "session": sid, "frames": 0})
        return sid

    def stop_session(self, reason: str | None = None) -> tuple[str | None, int]:
        with self._lock:
            sid, frames = self._session, self._frames
            self._session = None
        if sid is not None:
            event: dict[str, Any] = {"type": "recording_stopped", "session": sid, "frames": frames}
            if reason:
                event["reason"] = reason
            self.on_event(event)
        return sid, frames

    # --- control thread ---------------------------------------------------------------------------
    def offer(self, result: TickResult, model: str | None) -> bool:
        """Queue this tick's frame if recording and the frame is new. Never blocks."""
        session = self._session
        if session is None or result.frame is None or not result.new_frame:
            return False
        with self._lock:
            self._frames += 1
            self.pending += 1
        scan = self.lidar() if self.lidar is not None else None
        queued = self.queue.put(
            _Item(self.seq.next(), session, result, model, {**self.extra, "recorded": True}, scan)
        )
        if not queued:
            with self._lock:
                self.pending -= 1
        return queued

    # --- writer thread ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get(timeout=0.2)
            if item is None:
                self.spool.maybe_sync()
                if self._stop.is_set() and len(self.queue) == 0:
                    return
                continue
            try:
                self._write(item)
            finally:
                with self._lock:
                    self.pending -= 1

    def _write(self, item: _Item) -> None:
        try:
            extra = item.extra if item.scan is None else item.extra | lidar_fields(item.scan)
            data = frame_envelope(
                self.car, item.session, item.seq, item.result, item.model, extra, self.jpeg_quality
            )
        except Exception:
            log.exception("cannot encode frame %d", item.seq)
            return
        try:
            self.spool.append(data)
            self.written += 1
            self.scans += item.scan is not None
        except SpoolFull as exc:
            # Frames of the session still queued are tried too (the sender may free space);
            # those that do not fit are counted, and their seqs show up as gaps.
            self.dropped_full += 1
            if self._session == item.session:
                log.error("%s: recording stops", exc)
                self.stop_session(reason=f"spool full: {exc}")

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the writer thread and fsync the spool."""
        self._stop.set()
        self.queue.close()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None
        self.spool.flush()
