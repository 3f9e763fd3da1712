"""The detector slot: a classifier beside the pilot, and the safety rule it feeds (docs/car.md,
"The detector").

A detector is a model whose card says ``kind = "classifier"``: one head per task (``obstacle``:
none or a kind; ``surface``). It arrives by the same signed hot-swap as a pilot
(:class:`edge.hotswap.ModelManager`, given this slot's topics, cache and installer by
:func:`detector_manager`) and lives in a :class:`DetectorStage`, which the control loop calls once
per tick:

* :meth:`DetectorStage.step` hands the tick's frame to the detector every ``every_n_ticks`` ticks
  (a new frame only) and keeps the last :class:`Detection`; a new detector takes over between two
  ticks, like a pilot. The inference runs on a worker thread (``worker = true``, the default): the
  control thread only hands over the frame (the newest replaces one not yet started) and takes the
  finished results at the next tick, so the detector's milliseconds never lengthen a tick (ONNX
  Runtime releases the GIL while it runs). On a lockstep simulator the tick waits for the result of
  the previous tick's frame, so runs stay repeatable;
* :meth:`DetectorStage.guard` applies the safety rule to the autopilot's throttle: when an
  obstacle of a configured kind is ahead, with at least ``min_probability``, for ``confirm_ticks``
  runs in a row, and (where the body measures one) within ``distance_m``, the car stops (throttle 0,
  the simulator brakes) or slows (throttle capped). It lets go after ``clear_ticks`` runs without
  it. The start of a hold is an ``intervention`` event (``source: safety_rule``), so the car's
  model health counts it; a change of the obstacle class is a ``detection`` event.

Everything here on the control thread is non-blocking (with ``worker = false`` the inference runs
on the tick itself).
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.config import DetectorSection
from edge.realtime import raise_thread_priority
from edge.runtimes import LoadedModel
from firmware.camera import Frame
from firmware.car_body import Body
from schemas.model_card import ModelManifest, decode_classes, preprocess

log = logging.getLogger(__name__)

DETECTOR_SLOT = "detector"
NO_OBSTACLE = "none"


@dataclass(frozen=True, slots=True)
class Detection:
    """One run of the detector: ``classes`` is ``{task: (class, probability)}``."""

    tick: int
    model: str
    classes: dict[str, tuple[str, float]]
    inference_ms: float

    @property
    def obstacle(self) -> tuple[str, float] | None:
        return self.classes.get("obstacle")

    @property
    def surface(self) -> tuple[str, float] | None:
        return self.classes.get("surface")


class Detector:
    """A deployed classifier: card-driven preprocessing, one inference, card-driven decoding."""

    def __init__(self, manifest: ModelManifest, model: LoadedModel) -> None:
        if manifest.card.slot_kind != "classifier":
            raise ValueError(f"model {manifest.ref} is a {manifest.card.slot_kind}, not a classifier")
        self.manifest = manifest
        self.model = model

    @property
    def ref(self) -> str:
        return self.manifest.ref

    def detect(self, image: np.ndarray) -> tuple[dict[str, tuple[str, float]], float]:
        t0 = time.perf_counter()
        raw = self.model.run(preprocess(image, self.manifest.card.input))
        classes = decode_classes(self.manifest.card, raw)
        return classes, (time.perf_counter() - t0) * 1000

    def close(self) -> None:
        self.model.close()


@dataclass(slots=True)
class _Pending:
    detector: Detector | None
    on_installed: Callable[[int, int], None] | None


@dataclass(slots=True)
class _Job:
    detector: Detector
    tick: int
    image: np.ndarray
    classes: dict[str, tuple[str, float]] | None = None
    ms: float = 0.0
    error: Exception | None = None


class InferenceWorker:
    """One thread that runs the detector on the newest frame it was given. A frame handed over
    while the previous one is still waiting replaces it (counted in ``skipped``); results wait in
    order for :meth:`take`. A detector retired while the thread still uses it is closed after.

    ``priority``: SCHED_FIFO priority of the thread (the control thread's minus one, where that one
    has one). Without it, a busy machine may preempt the worker while it holds the GIL
    (preprocessing, decoding) and the control thread, waking, waits for it (docs/perception.md,
    "Goals and figures")."""

    def __init__(self, priority: int | None = None) -> None:
        self.priority = priority
        self._cond = threading.Condition()
        self._waiting: _Job | None = None
        self._running: _Job | None = None
        self._done: list[_Job] = []
        self._retired: list[tuple[Detector, Callable[[Detector], None]]] = []
        self._stop = False
        self.skipped = 0
        self._thread = threading.Thread(target=self._run, name="detector", daemon=True)
        self._thread.start()

    def submit(self, detector: Detector, tick: int, image: np.ndarray) -> None:
        with self._cond:
            if self._waiting is not None:
                self.skipped += 1
            self._waiting = _Job(detector, tick, image)
            self._cond.notify_all()

    def take(self) -> list[_Job]:
        with self._cond:
            done, self._done = self._done, []
        return done

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing waits or runs (a lockstep tick); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._waiting is None and self._running is None, timeout)

    def retire(self, detector: Detector, close: Callable[[Detector], None]) -> None:
        """``close(detector)`` once the thread no longer uses it (now, if it does not)."""
        with self._cond:
            if self._waiting is not None and self._waiting.detector is detector:
                self._waiting = None
            if self._running is not None and self._running.detector is detector:
                self._retired.append((detector, close))
                return
        close(detector)

    def _run(self) -> None:
        raise_thread_priority(self.priority, "detector")
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._waiting is not None)
                if self._stop:
                    return
                job, self._waiting = self._waiting, None
                self._running = job
            assert job is not None
            try:
                job.classes, job.ms = job.detector.detect(job.image)
            except Exception as exc:
                job.error = exc
            with self._cond:
                self._running = None
                self._done.append(job)
                # Only the running detector is ever kept back (retire closes any other at once).
                retired, self._retired = self._retired, []
                self._cond.notify_all()
            for detector, close in retired:
                close(detector)

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)


class DetectorStage:
    """The detector slot in the control loop (see the module docstring)."""

    def __init__(
        self,
        config: DetectorSection,
        body: Body,
        *,
        emit: Callable[[dict[str, Any]], None],
        on_replaced: Callable[[Detector], None] | None = None,
        realtime_priority: int | None = None,
    ) -> None:
        self.config = config
        # The worker runs just below the control thread, where that one is real-time.
        self._worker_priority = max(1, realtime_priority - 1) if realtime_priority else None
        self.body = body
        self._emit = emit
        self._on_replaced = on_replaced or (lambda d: d.close())
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self.detector: Detector | None = None
        self.last: Detection | None = None
        self.holding = False
        self._seen = 0  # runs in a row with an obstacle the rule acts on
        self._clear = 0  # runs in a row without one, while holding
        self._reported = NO_OBSTACLE
        self._ms_sum = 0.0
        self._ms_n = 0
        self.runs = 0
        self.holds = 0
        self._worker: InferenceWorker | None = None

    # --- any thread -------------------------------------------------------------------------------
    def install(
        self, detector: Detector | None, on_installed: Callable[[int, int], None] | None = None
    ) -> None:
        """Make ``detector`` the one that runs from the next tick on (None removes it)."""
        with self._lock:
            self._pending.append(_Pending(detector, on_installed))

    def configure(self, config: DetectorSection) -> None:
        self.config = config

    def take_ms(self) -> float | None:
        """Mean inference time since the previous call."""
        with self._lock:
            ms = self._ms_sum / self._ms_n if self._ms_n else None
            self._ms_sum, self._ms_n = 0.0, 0
        return ms

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        with self._lock:
            pending, self._pending = self._pending, []
        for p in pending:
            if p.detector is not None:
                p.detector.close()
        if self.detector is not None:
            self.detector.close()
            self.detector = None

    # --- the control thread -----------------------------------------------------------------------
    def step(self, index: int, t_ns: int, frame: Frame | None, new_frame: bool) -> Detection | None:
        """Install a pending detector, take finished results, hand this tick's frame over if due;
        the newest detection (or None)."""
        self._install_pending(index, t_ns)
        worker = self._worker
        if worker is not None:
            if self.body.lockstep:
                worker.wait_idle(1.0)
            for job in worker.take():
                self._result(job)
        detector = self.detector
        if detector is None or frame is None or not new_frame or index % self.config.every_n_ticks:
            return self.last
        if not self.config.worker:
            job = _Job(detector, index, frame.image)
            try:
                job.classes, job.ms = detector.detect(frame.image)
            except Exception as exc:
                job.error = exc
            self._result(job)
            return self.last
        if worker is None:
            worker = self._worker = InferenceWorker(self._worker_priority)
        worker.submit(detector, index, frame.image)
        return self.last

    def _result(self, job: _Job) -> None:
        """Account one finished run of the current detector (a retired one's result is dropped)."""
        if job.detector is not self.detector:
            return
        if job.error is not None or job.classes is None:
            # A failing detector must not stop the car by itself: it reports and keeps the last
            # result out of the rule.
            log.warning("detector %s failed: %s", job.detector.ref, job.error)
            self.last = None
            return
        with self._lock:
            self._ms_sum += job.ms
            self._ms_n += 1
        self.runs += 1
        self.last = Detection(job.tick, job.detector.ref, job.classes, job.ms)
        self._track(self.last)

    def _install_pending(self, index: int, t_ns: int) -> None:
        if not self._pending:  # the usual tick: no lock (an install racing this is taken next tick)
            return
        with self._lock:
            pending, self._pending = self._pending, []
        for p in pending:
            old, self.detector = self.detector, p.detector
            self.last, self._seen, self._clear = None, 0, 0
            if old is not None and old is not p.detector:
                if self._worker is not None:  # closed once the worker is done with it
                    self._worker.retire(old, self._on_replaced)
                else:
                    self._on_replaced(old)
            if p.on_installed is not None:
                p.on_installed(index, t_ns)

    def _acts_on(self, detection: Detection) -> bool:
        obstacle = detection.obstacle
        if obstacle is None:
            return False
        kind, p = obstacle
        return kind in self.config.kinds and p >= self.config.min_probability

    def _track(self, detection: Detection) -> None:
        """Count runs with and without an obstacle and report a changed class as an event."""
        if self._acts_on(detection):
            self._seen += 1
            self._clear = 0
        else:
            self._seen = 0
            self._clear += 1
        obstacle = detection.obstacle
        kind = obstacle[0] if obstacle is not None and self._seen >= self.config.confirm_ticks else None
        if kind is None and self._clear >= self.config.clear_ticks:
            kind = NO_OBSTACLE
        if kind is not None and kind != self._reported and obstacle is not None:
            self._reported = kind
            surface = detection.surface
            self._emit(
                {
                    "type": "detection",
                    "model": detection.model,
                    "obstacle": kind,
                    "probability": round(obstacle[1], 4),
                    "surface": surface[0] if surface else None,
                    "distance_m": _round(self.body.range_ahead()) if kind != NO_OBSTACLE else None,
                    "inference_ms": round(detection.inference_ms, 3),
                }
            )

    def guard(self, autopilot: bool, throttle: float) -> tuple[float, bool]:
        """The safety rule on this tick's throttle: ``(throttle, held)``."""
        c = self.config
        if not (c.rule and autopilot and self.detector is not None):
            self.holding = False
            return throttle, False
        if self.holding:
            if self._clear >= c.clear_ticks:
                self.holding = False
        elif self._seen >= c.confirm_ticks and self.last is not None:
            distance = self.body.range_ahead()
            if distance is None or distance <= c.distance_m:
                self._start_hold(self.last, distance)
        if not self.holding:
            return throttle, False
        return (0.0 if c.action == "stop" else min(throttle, c.slow_throttle)), True

    def _start_hold(self, detection: Detection, distance: float | None) -> None:
        self.holding = True
        self.holds += 1
        kind, p = detection.obstacle or (NO_OBSTACLE, 0.0)
        where = f", {distance:.2f} m" if distance is not None else ""
        self._emit(
            {
                "type": "intervention",
                "source": "safety_rule",
                "reason": f"safety rule: {kind} ahead (p {p:.2f}{where}): {self.config.action}",
            }
        )


def slot_summary(stage: DetectorStage) -> dict[str, Any]:
    """The detector slot in the daemon's status and its /metrics readings: the model (None while
    the slot is empty), runs and safety holds since boot, and the last obstacle and surface class."""
    last = stage.last
    obstacle = last.obstacle if last is not None else None
    surface = last.surface if last is not None else None
    return {
        "detector": stage.detector.ref if stage.detector else None,
        "detector_runs": stage.runs,
        "safety_holds": stage.holds,
        "obstacle": obstacle[0] if obstacle else None,
        "surface": surface[0] if surface else None,
    }


def telemetry_fields(stage: DetectorStage) -> dict[str, Any]:
    """The detector's part of a telemetry message (nothing while the slot is empty)."""
    detector = stage.detector
    if detector is None:
        return {}
    fields: dict[str, Any] = {"detector": detector.ref, "safety_hold": stage.holding}
    last = stage.last
    if last is not None:
        if last.obstacle is not None:
            fields["obstacle"], p = last.obstacle
            fields["obstacle_p"] = round(p, 4)
        if last.surface is not None:
            fields["surface"] = last.surface[0]
    ms = stage.take_ms()
    if ms is not None:
        fields["detector_ms"] = round(ms, 3)
    return fields


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
