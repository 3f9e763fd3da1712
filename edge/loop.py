"""The fixed-rate control loop: one tick reads the latest frame, decides, applies, reports.

It runs on its own thread, paced by the shared :class:`CycleTimer` (absolute schedule, lateness
and missed ticks measured). Everything else talks to it through non-blocking calls:

* inputs (from MQTT commands, the model manager): :meth:`set_mode`, :meth:`drive`,
  :meth:`set_estop`, :meth:`set_autopilot`, :meth:`install_pilot` — they only set fields under a
  short lock; the loop picks them up at the start of the next tick, so an e-stop takes effect
  within one tick and a new pilot takes over exactly between two ticks;
* outputs: each tick hands a :class:`TickResult` to a :class:`LoopSink`, which must not block
  (the daemon puts frames into bounded queues and counts what does not fit).

Modes: ``manual`` follows drive commands, with a deadman (no command for ``deadman_ms`` → throttle
0); ``autopilot`` follows the selected pilot (no pilot, no fresh frame or a failing pilot → stop);
``stop`` holds neutral. An active fleet e-stop overrides every mode. What is reported is always the
action the actuators applied after clipping.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edge.config import DetectorSection, LoopSection
from edge.detector import Detection, Detector, DetectorStage
from edge.health import ModelHealth
from edge.pilots import Decision, Pilot
from edge.realtime import raise_thread_priority
from firmware.actuators import Applied, clip_unit
from firmware.camera import CameraError, Frame
from firmware.car_body import Body, BodyState
from firmware.cycle_timer import CycleTimer, TimingStats
from schemas.messages import Mode

log = logging.getLogger(__name__)

# After this many consecutive failing ticks the loop gives up (neutral outputs, thread ends) and
# the systemd watchdog restarts the daemon.
MAX_CONSECUTIVE_TICK_FAILURES = 50


@dataclass(frozen=True, slots=True)
class TickResult:
    tick: int
    t_ns: int  # monotonic time at the start of the tick
    mode: Mode  # what the car did this tick ("stop" while e-stopped)
    requested_mode: Mode
    estop: bool
    steering: float  # applied, after clipping
    throttle: float
    pilot: str | None  # the pilot (model ref) that decided, in autopilot
    inference_ms: float | None
    frame: Frame | None
    new_frame: bool
    # why the car was held: estop, stop, deadman, stale_frame, no_pilot, pilot_error, safety_rule
    reason: str | None
    body: BodyState | None
    decision: Decision | None
    detection: Detection | None = None  # the detector's newest result (edge.detector)


class LoopSink(Protocol):
    def on_tick(self, result: TickResult) -> None: ...
    def on_event(self, event: dict[str, Any]) -> None: ...


class NullSink:
    def on_tick(self, result: TickResult) -> None:
        pass

    def on_event(self, event: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True, slots=True)
class LoopStats:
    timing: TimingStats
    ticks_window: int
    period_ms: float | None  # mean tick period over the window
    inference_ms: float | None  # mean over the window
    failures: int
    camera_stale: int
    confidence: float | None = None  # mean over the window, where the pilot gives one


@dataclass(slots=True)
class _PendingPilot:
    name: str
    pilot: Pilot | None
    on_installed: Callable[[int, int], None] | None


@dataclass(slots=True)
class _Inputs:
    pending: list[_PendingPilot]
    mode: Mode
    estop: bool
    manual: tuple[float, float, int]  # steering, throttle, monotonic ns when received
    autopilot: str
    autopilot_throttle: float
    max_throttle: float
    deadman_ns: int


@dataclass(slots=True)
class _Choice:
    """What this tick asks of the actuators, and why (``reason``: why not the pilot's wish)."""

    steering: float = 0.0
    throttle: float = 0.0
    reason: str | None = None
    pilot: str | None = None
    inference_ms: float | None = None
    decision: Decision | None = None


class ControlLoop:
    def __init__(
        self,
        body: Body,
        config: LoopSection,
        sink: LoopSink | None = None,
        *,
        timer: CycleTimer | None = None,
        on_replaced: Callable[[Pilot | Detector], None] | None = None,
        detector: DetectorSection | None = None,
    ) -> None:
        self.body = body
        self.config = config
        self.sink: LoopSink = sink or NullSink()
        self.timer = timer or CycleTimer(config.hz)
        self._on_replaced = on_replaced or (lambda p: p.close())
        # The detector slot (None: this loop has none); its safety rule acts on the autopilot.
        self.detector: DetectorStage | None = None
        if detector is not None:
            self.detector = DetectorStage(
                detector,
                body,
                emit=self._emit,
                on_replaced=self._on_replaced,
                realtime_priority=config.realtime_priority,
            )
        self._lock = threading.Lock()
        # inputs (written by other threads under _lock, read by the loop)
        self._mode: Mode = config.start_mode
        self._estop = False
        self._estop_reason = ""
        self._manual = (0.0, 0.0, 0)  # steering, throttle, monotonic ns when received
        self._autopilot = config.autopilot
        self._autopilot_throttle = config.autopilot_throttle
        self._max_throttle = config.max_throttle
        self._deadman_ns = int(config.deadman_ms * 1e6)
        self._pending: list[_PendingPilot] = []
        # loop-owned state
        self._pilots: dict[str, Pilot] = {}
        self._last_frame_index = -1
        self._deadman_tripped = False
        self._last_reason: str | None = None
        self._last_error: tuple[str, float] = ("", 0.0)
        self.last: TickResult | None = None
        # counters
        self.failures = 0
        self.camera_stale = 0
        self._window_ticks = 0
        self._window_t0: int | None = None
        self._window_inf_sum = 0.0
        self._window_inf_n = 0
        self._window_conf_sum = 0.0
        self._window_conf_n = 0
        self.health = ModelHealth()
        self._last_mode: Mode = config.start_mode
        # thread
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.crashed: BaseException | None = None

    # --- inputs (any thread) --------------------------------------------------------------------
    def set_mode(self, mode: Mode) -> None:
        with self._lock:
            self._mode = mode

    @property
    def deadman_s(self) -> float:
        return self._deadman_ns / 1e9

    @property
    def mode(self) -> Mode:
        return self._mode

    def drive(self, steering: float, throttle: float) -> None:
        """A manual drive command; it holds for ``deadman_ms``."""
        with self._lock:
            self._manual = (clip_unit(steering), clip_unit(throttle), time.monotonic_ns())

    def set_estop(self, active: bool, reason: str = "") -> None:
        with self._lock:
            was = self._estop
            self._estop = active
            self._estop_reason = reason
            if was and not active:
                # Leaving an e-stop never resumes driving by itself: the car waits for a mode command.
                self._mode = "stop"

    @property
    def estop(self) -> bool:
        return self._estop

    def set_autopilot(self, name: str) -> None:
        with self._lock:
            self._autopilot = name

    @property
    def autopilot(self) -> str:
        return self._autopilot

    def set_tuning(
        self,
        *,
        autopilot_throttle: float | None = None,
        max_throttle: float | None = None,
        deadman_ms: float | None = None,
    ) -> None:
        with self._lock:
            if autopilot_throttle is not None:
                self._autopilot_throttle = autopilot_throttle
            if max_throttle is not None:
                self._max_throttle = max_throttle
            if deadman_ms is not None:
                self._deadman_ns = int(deadman_ms * 1e6)

    def install_pilot(
        self, name: str, pilot: Pilot | None, on_installed: Callable[[int, int], None] | None = None
    ) -> None:
        """Make ``pilot`` the one called ``name`` from the next tick on (None removes it).

        ``on_installed(tick, t_ns)`` is called on the control thread at the start of the first
        tick that uses it; the pilot it replaces goes to ``on_replaced`` (closed off the loop).
        """
        with self._lock:
            self._pending.append(_PendingPilot(name, pilot, on_installed))

    def pilot(self, name: str) -> Pilot | None:
        return self._pilots.get(name)

    # --- the tick ---------------------------------------------------------------------------------
    def tick(self, tick_index: int | None = None) -> TickResult:
        t_ns = time.monotonic_ns()
        index = self.timer.ticks if tick_index is None else tick_index
        inputs = self._take_inputs()
        self._install_pending(inputs.pending, index, t_ns)
        self.body.before_tick()
        frame, new_frame = self._read_camera()
        body_state = self.body.state()
        choice = self._decide(inputs, frame, t_ns)
        detection = self._detect(inputs, choice, index, t_ns, frame, new_frame)
        if (
            choice.reason != self._last_reason
            and choice.reason in ("stale_frame", "no_pilot")
            and inputs.mode == "autopilot"
        ):
            self._emit({"type": "intervention", "reason": f"autopilot held: {choice.reason}"})
        self._last_reason = choice.reason
        if self._last_mode == "autopilot" and inputs.mode == "manual" and not inputs.estop:
            self._emit({"type": "intervention", "reason": "human takeover"})
        self._last_mode = inputs.mode

        applied = self.body.actuators.apply(choice.steering, choice.throttle)
        result = TickResult(
            tick=index,
            t_ns=t_ns,
            mode="stop" if inputs.estop else inputs.mode,
            requested_mode=inputs.mode,
            estop=inputs.estop,
            steering=applied.steering,
            throttle=applied.throttle,
            pilot=choice.pilot,
            inference_ms=choice.inference_ms,
            frame=frame,
            new_frame=new_frame,
            reason=choice.reason,
            body=body_state,
            decision=choice.decision,
            detection=detection,
        )
        self.last = result
        self._account(result)
        for event in self.body.poll_events():
            self._emit(event)
        self.sink.on_tick(result)
        return result

    def _detect(
        self, inputs: _Inputs, choice: _Choice, index: int, t_ns: int, frame: Frame | None, new_frame: bool
    ) -> Detection | None:
        """Run the detector slot and let its safety rule cap the autopilot's throttle."""
        stage = self.detector
        if stage is None:
            return None
        detection = stage.step(index, t_ns, frame, new_frame)
        driving = inputs.mode == "autopilot" and not inputs.estop and choice.reason is None
        throttle, held = stage.guard(driving, choice.throttle)
        if held:
            choice.throttle = throttle
            choice.reason = "safety_rule"
        return detection

    def _take_inputs(self) -> _Inputs:
        """What other threads set, read once per tick under the lock."""
        with self._lock:
            pending, self._pending = self._pending, []
            return _Inputs(
                pending,
                self._mode,
                self._estop,
                self._manual,
                self._autopilot,
                self._autopilot_throttle,
                self._max_throttle,
                self._deadman_ns,
            )

    def _install_pending(self, pending: list[_PendingPilot], index: int, t_ns: int) -> None:
        for p in pending:
            old = self._pilots.pop(p.name, None)
            if p.pilot is not None:
                self._pilots[p.name] = p.pilot
            if old is not None and old is not p.pilot:
                self._on_replaced(old)
            if p.on_installed is not None:
                p.on_installed(index, t_ns)

    def _read_camera(self) -> tuple[Frame | None, bool]:
        """The latest frame (None if older than ``max_frame_age_ms``) and whether it is new."""
        frame: Frame | None = None
        try:
            frame = self.body.camera.read_latest(self.config.max_frame_age_ms)
        except CameraError:
            self.camera_stale += 1
        new_frame = frame is not None and frame.index != self._last_frame_index
        if frame is not None:
            self._last_frame_index = frame.index
        return frame, new_frame

    def _decide(self, inputs: _Inputs, frame: Frame | None, t_ns: int) -> _Choice:
        if inputs.estop:
            return _Choice(reason="estop")
        if inputs.mode == "stop":
            return _Choice(reason="stop")
        if inputs.mode == "manual":
            return self._manual_choice(inputs, t_ns)
        return self._autopilot_choice(inputs, frame)

    def _manual_choice(self, inputs: _Inputs, t_ns: int) -> _Choice:
        steering, throttle, t_cmd = inputs.manual
        if t_ns - t_cmd > inputs.deadman_ns:
            if throttle != 0.0 and not self._deadman_tripped:
                self._deadman_tripped = True
                self._emit({"type": "intervention", "reason": "deadman: no drive command"})
            return _Choice(steering, 0.0, reason="deadman")
        self._deadman_tripped = False
        return _Choice(steering, throttle)

    def _autopilot_choice(self, inputs: _Inputs, frame: Frame | None) -> _Choice:
        pilot = self._pilots.get(inputs.autopilot)
        if pilot is None:
            return _Choice(reason="no_pilot")
        if pilot.needs_frame and frame is None:
            return _Choice(reason="stale_frame")
        name = pilot.ref
        try:
            decision = pilot.act(frame)
        except Exception as exc:
            self._report_error(f"pilot {name}: {exc}")
            return _Choice(reason="pilot_error", pilot=name)
        throttle = inputs.autopilot_throttle if decision.throttle is None else decision.throttle
        throttle = clip_unit(throttle) * inputs.max_throttle
        return _Choice(decision.steering, throttle, None, name, decision.inference_ms, decision)

    def _account(self, r: TickResult) -> None:
        with self._lock:
            if self._window_t0 is None:
                self._window_t0 = r.t_ns
            self._window_ticks += 1
            if r.inference_ms is not None:
                self._window_inf_sum += r.inference_ms
                self._window_inf_n += 1
            if r.decision is not None and r.decision.confidence is not None:
                self._window_conf_sum += r.decision.confidence
                self._window_conf_n += 1

    def take_stats(self) -> LoopStats:
        """Timing since boot plus means over the window since the previous call."""
        now = time.monotonic_ns()
        with self._lock:
            n, t0 = self._window_ticks, self._window_t0
            inf = self._window_inf_sum / self._window_inf_n if self._window_inf_n else None
            self._window_ticks, self._window_t0 = 0, None
            self._window_inf_sum, self._window_inf_n = 0.0, 0
            conf = self._window_conf_sum / self._window_conf_n if self._window_conf_n else None
            self._window_conf_sum, self._window_conf_n = 0.0, 0
        period = (now - t0) / 1e6 / n if n and t0 is not None else None
        return LoopStats(self.timer.stats(), n, period, inf, self.failures, self.camera_stale, conf)

    def _emit(self, event: dict[str, Any]) -> None:
        self.health.count(event)
        try:
            self.sink.on_event(event)
        except Exception:
            log.exception("loop event sink failed")

    def _report_error(self, message: str) -> None:
        # The same error every tick would flood the event stream: report it once per 5 s.
        last, when = self._last_error
        now = time.monotonic()
        if message != last or now - when > 5.0:
            self._last_error = (message, now)
            log.warning("%s", message)
            self._emit({"type": "error", "message": message[:500], "component": "loop"})

    # --- the thread -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="control-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures_in_row = 0
        raise_thread_priority(self.config.realtime_priority, "control")
        try:
            while not self._stop.is_set():
                index = self.timer.wait()
                if self._stop.is_set():
                    break
                try:
                    self.tick(index)
                    failures_in_row = 0
                except Exception as exc:
                    self.failures += 1
                    failures_in_row += 1
                    self._report_error(f"tick failed: {type(exc).__name__}: {exc}")
                    self._safe_stop()
                    if failures_in_row >= MAX_CONSECUTIVE_TICK_FAILURES:
                        raise RuntimeError(f"{failures_in_row} ticks failed in a row; last: {exc}") from exc
        except BaseException as exc:
            self.crashed = exc
            log.critical("control loop stopped: %s", exc)
        finally:
            self._safe_stop()

    def _safe_stop(self) -> Applied | None:
        try:
            return self.body.actuators.stop()
        except Exception:
            log.exception("cannot set the actuators to neutral")
            return None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop ticking, leave the outputs at neutral, join the thread."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.error("control loop did not stop within %.1fs", timeout)
        self._thread = None
        self._safe_stop()

    def close_pilots(self) -> None:
        """Close every pilot (call after :meth:`stop`)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for p in pending:
            if p.pilot is not None:
                p.pilot.close()
        if self.detector is not None:
            self.detector.close()
        pilots, self._pilots = self._pilots, {}
        for pilot in pilots.values():
            try:
                pilot.close()
            except Exception:
                log.exception("closing pilot %s", pilot.name)
