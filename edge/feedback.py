"""Feedback capture: the frames around a moment where the model failed, kept in full even when the
car is not recording.

The control thread keeps a ring buffer of the last ``feedback.before_s`` seconds of camera frames
with what was applied. An intervention (a human takeover, the deadman, the safety rule, the
autopilot held), an off-track moment or a low-confidence output opens a capture: the ring's frames
and the next ``after_s`` seconds. A closed capture gets consecutive frame seqs and goes, as frame
envelopes of a session of its own (``feedback-<event>-<time>``), into the same spool as recorded
frames, so the sender publishes it with QoS 1 and nothing is lost across outages. Every frame says
why in ``feedback_event``/``feedback_reason``; the hub's feedback collector takes these sessions
whole. A ``recording_stopped`` event, published once the frames are acknowledged, closes the session
at the hub. At most one capture starts per ``min_interval_s``; moments in between are counted.

While the car records, nothing is captured: the recorded session already holds every frame.
"""

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.config import FeedbackSection
from edge.loop import TickResult
from edge.recorder import FrameSeq, frame_envelope
from edge.spool import ForwardSpool, SpoolFull

log = logging.getLogger(__name__)


@dataclass
class _Capture:
    kind: str
    reason: str
    end_ns: int
    wall: float
    frames: list[TickResult] = field(default_factory=list)  # each names its pilot


def session_name(kind: str, wall: float) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(wall)) + f"-{int(wall * 1000) % 1000:03d}"
    return f"feedback-{kind.replace('_', '-')}-{stamp}"


class FeedbackCapture:
    """The ring buffer and the open capture (control thread), and a writer thread for the spool."""

    def __init__(
        self,
        car: str,
        config: Callable[[], FeedbackSection],
        seq: FrameSeq,
        spool: ForwardSpool,
        *,
        jpeg_quality: int = 90,
        on_done: Callable[[dict[str, Any]], None] = lambda e: None,
    ) -> None:
        self.car = car
        self._config = config
        self.seq = seq
        self.spool = spool
        self.jpeg_quality = jpeg_quality
        self.on_done = on_done
        self._ring: deque[TickResult] = deque()
        self._open: _Capture | None = None
        self._last_start_ns: int | None = None
        self._now_ns = 0  # the latest tick's time (events come between ticks)
        self._recording = False
        self._requests: deque[tuple[str, str]] = deque(maxlen=16)  # moments seen by other threads
        self._queue: queue.Queue[tuple[_Capture, range] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.captures = 0  # captures closed and handed to the writer
        self.suppressed = 0  # moments that came within min_interval_s of a capture's start
        self.frames_sent = 0  # frames spooled
        self.dropped_full = 0  # frames the spool had no room for
        self.pending = 0  # captures handed to the writer and not yet spooled

    # --- control thread -----------------------------------------------------------------------
    def on_tick(self, result: TickResult, recording: bool) -> None:
        cfg = self._config()
        self._now_ns, self._recording = result.t_ns, recording
        if not cfg.enabled or recording:
            if self._open is not None:
                self._close()
            self._ring.clear()
            return
        while self._requests:
            self.moment(*self._requests.popleft(), result.t_ns)
        if result.frame is not None and result.new_frame:
            if self._open is not None:
                self._open.frames.append(result)
            self._ring.append(result)
            horizon = result.t_ns - int(cfg.before_s * 1e9)
            while self._ring and self._ring[0].t_ns < horizon:
                self._ring.popleft()
        if self._open is not None and result.t_ns >= self._open.end_ns:
            self._close()
        conf = result.decision.confidence if result.decision is not None else None
        if result.mode == "autopilot" and conf is not None and conf < cfg.min_confidence:
            self.moment("low_confidence", f"confidence {conf:.2f} < {cfg.min_confidence:.2f}", result.t_ns)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "intervention":
            self.moment("intervention", str(event.get("reason") or "intervention"), self._now_ns)
        elif kind == "off_track":
            self.moment("off_track", "off track", self._now_ns)

    def request(self, kind: str, reason: str) -> None:
        """A moment seen on another thread (drifted input, from telemetry); taken at the next tick."""
        self._requests.append((kind, reason))

    def moment(self, kind: str, reason: str, t_ns: int) -> bool:
        """A moment worth keeping; True if it opened a capture."""
        cfg = self._config()
        if not cfg.enabled or self._recording or kind not in cfg.events or self._open is not None:
            return False
        if self._last_start_ns is not None and t_ns - self._last_start_ns < cfg.min_interval_s * 1e9:
            self.suppressed += 1
            return False
        self._last_start_ns = t_ns
        self._open = _Capture(kind, reason, t_ns + int(cfg.after_s * 1e9), time.time(), list(self._ring))
        log.info("feedback: %s (%s), capturing", kind, reason)
        return True

    def flush(self) -> None:
        """Close the open capture now (at shutdown, once the control loop stopped)."""
        if self._open is not None:
            self._close()

    def _close(self) -> None:
        capture, self._open = self._open, None
        self._ring.clear()  # what was captured is never sent twice
        if capture is None or not capture.frames:
            return
        with self._lock:
            self.pending += 1
        self.captures += 1
        self._queue.put((capture, self.seq.reserve(len(capture.frames))))

    # --- writer thread ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="feedback", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write the captures already closed, then end the writer thread."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._write(*job)
            except Exception:
                log.exception("feedback: cannot write a capture")
            finally:
                with self._lock:
                    self.pending -= 1

    def _write(self, capture: _Capture, seqs: range) -> None:
        session = session_name(capture.kind, capture.wall)
        extra = {"recorded": False, "feedback_event": capture.kind, "feedback_reason": capture.reason}
        written = 0
        for seq, result in zip(seqs, capture.frames, strict=True):
            data = frame_envelope(self.car, session, seq, result, result.pilot, extra, self.jpeg_quality)
            try:
                self.spool.append(data)
                written += 1
            except SpoolFull:
                self.dropped_full += 1  # its seq shows up as a gap at the hub
        self.frames_sent += written
        reason = f"feedback: {capture.kind}: {capture.reason}"
        self.on_done({"type": "recording_stopped", "session": session, "frames": written, "reason": reason})
