"""The fleet monitor: each car's model health from its telemetry, and drift against the card.

:meth:`FleetMonitor.on_telemetry` runs on the ingest thread for every telemetry message; it keeps,
per car, the counters' recent history (for interventions and off-track moments per minute), the
last lap time, inference time and confidence, and the drift score of the last input statistics
against the training statistics in the model's card. Drift is declared after
``drift_reports`` reports above the threshold in a row (one odd report is not a changed world) and
cleared after as many below it; each change raises a ``drift`` event through ``on_event``.

:meth:`FleetMonitor.window` gives a car's driving since it started on its current model (counters
at the first and last report, and the flying laps: the first lap after a swap may have begun on
the previous model, so it is left out); the canary compares these.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cachetools import LRUCache

from hub.config import MlopsConfig
from hub.telemetry.metrics import ModelHealthRow
from schemas.input_stats import InputStats, feature_drift, input_drift
from schemas.messages import DriftEvent, Event, LapEvent, Telemetry

log = logging.getLogger(__name__)

CardStats = Callable[[str], InputStats | None]  # model ref -> its card's training statistics
MAX_LAPS = 100  # lap times kept per car and model


@dataclass(frozen=True)
class Window:
    """A car's driving on one model: from its first report on the model to its last."""

    car: str
    model: str
    since: float
    minutes: float
    interventions: int
    off_track: int
    laps: list[float]

    def per_min(self, count: int) -> float | None:
        return count / self.minutes if self.minutes > 0 else None


@dataclass
class _CarState:
    model: str | None = None
    received: float = 0.0
    samples: deque[tuple[float, int, int]] = field(default_factory=deque)  # ts, interventions, off-track
    lap_time_s: float | None = None
    inference_ms: float | None = None
    confidence: float | None = None
    loop_late_p99_ms: float | None = None
    detector: str | None = None  # the detector slot's model (name:version) beside the pilot
    detector_ms: float | None = None
    drift_score: float | None = None
    feature_drift_score: float | None = None
    drifted: bool = False
    streak: int = 0  # reports in a row on the other side of the threshold
    since: float = 0.0  # when this model's first report arrived
    first: tuple[float, int, int] | None = None  # the first counters on this model (the last: samples[-1])
    lap_events: int = 0
    laps: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_LAPS))


MAX_CARS = 1024
MAX_MODELS = 256


class FleetMonitor:
    def __init__(
        self, config: MlopsConfig, card_stats: CardStats, on_event: Callable[[str, DriftEvent], None]
    ) -> None:
        self.config = config
        self.card_stats = card_stats
        self.on_event = on_event
        # Bounded: telemetry under invented car ids or model names must not grow the hub for ever;
        # the car (or model) heard from least recently is forgotten first.
        self._cars: LRUCache[str, _CarState] = LRUCache(maxsize=MAX_CARS)
        self._refs: LRUCache[str, InputStats | None] = LRUCache(maxsize=MAX_MODELS)
        self._lock = threading.Lock()

    def on_telemetry(self, car: str, msg: Telemetry) -> None:
        with self._lock:
            state = self._cars.setdefault(car, _CarState())
            if msg.model != state.model:  # a new model: its own history, its own reference
                self._cars[car] = state = _CarState(model=msg.model, since=time.time())
            state.received = time.time()
            self._count(state, msg)
            event = self._drift(car, state, msg.input_stats) if msg.input_stats is not None else None
        if event is not None:
            log.warning("model %s on %s: input drift %s (%s)", event.model, car, event.drifted, event.why())
            self.on_event(car, event)

    def _count(self, state: _CarState, msg: Telemetry) -> None:
        state.lap_time_s = msg.lap_time_s or state.lap_time_s
        state.inference_ms = msg.inference_ms
        state.confidence = msg.confidence
        state.loop_late_p99_ms = msg.loop_late_p99_ms
        state.detector = msg.detector
        state.detector_ms = msg.detector_ms
        if msg.interventions is None or msg.off_track_count is None:
            return
        now = (msg.ts, msg.interventions, msg.off_track_count)
        samples = state.samples
        if samples and (now[1] < samples[-1][1] or now[2] < samples[-1][2]):
            samples.clear()  # the car restarted: its counters did too
        if not samples:
            state.first = now  # the window starts again with them
        samples.append(now)
        while len(samples) > 2 and samples[0][0] < msg.ts - self.config.rate_window_s:
            samples.popleft()

    def on_car_event(self, car: str, event: Event) -> None:
        """A car's event: its lap times, for the model it drove them on."""
        if not isinstance(event, LapEvent):
            return
        with self._lock:
            state = self._cars.get(car)
            if state is None or event.model is None or event.model != state.model:
                return
            state.lap_events += 1
            if state.lap_events > 1:  # the first may have begun on the previous model
                state.laps.append(event.lap_time_s)

    def window(self, car: str) -> Window | None:
        """The car's driving since it started on its current model (None before two reports)."""
        with self._lock:
            s = self._cars.get(car)
            if s is None or s.model is None or s.first is None or not s.samples:
                return None
            (t0, i0, o0), (t1, i1, o1) = s.first, s.samples[-1]
            return Window(car, s.model, s.since, (t1 - t0) / 60, i1 - i0, o1 - o0, list(s.laps))

    def _reference(self, model: str) -> InputStats | None:
        if model not in self._refs:
            try:
                self._refs[model] = self.card_stats(model)
            except Exception:
                log.exception("cannot read the card of %s", model)
                return None
        return self._refs[model]

    def _drift(self, car: str, state: _CarState, live: InputStats) -> DriftEvent | None:
        reference = self._reference(state.model) if state.model else None
        if reference is None or state.model is None:
            return None
        state.drift_score = score = input_drift(reference, live)
        state.feature_drift_score = features = _feature_score(reference, live)
        threshold, feature_threshold = self.config.drift_threshold, self.config.feature_drift_threshold
        over = score > threshold or (features is not None and features > feature_threshold)
        crossed = over != state.drifted
        state.streak = state.streak + 1 if crossed else 0
        if state.streak < self.config.drift_reports:
            return None
        state.drifted, state.streak = not state.drifted, 0
        return DriftEvent(
            ts=time.time(),
            model=state.model,
            score=round(score, 4),
            threshold=threshold,
            drifted=state.drifted,
            feature_score=round(features, 4) if features is not None else None,
            feature_threshold=feature_threshold if features is not None else None,
        )

    def rows(self) -> list[ModelHealthRow]:
        """Each car's model health now, for the metrics and the API."""
        with self._lock:
            return [self._row(car, s) for car, s in sorted(self._cars.items())]

    def _row(self, car: str, s: _CarState) -> ModelHealthRow:
        per_min: tuple[float | None, float | None] = (None, None)
        if len(s.samples) >= 2 and s.samples[-1][0] > s.samples[0][0]:
            (t0, i0, o0), (t1, i1, o1) = s.samples[0], s.samples[-1]
            minutes = (t1 - t0) / 60
            per_min = ((i1 - i0) / minutes, (o1 - o0) / minutes)
        cfg = self.config
        degraded = (per_min[0] or 0) > cfg.max_interventions_per_min or (
            per_min[1] or 0
        ) > cfg.max_off_track_per_min
        return ModelHealthRow(
            car=car,
            model=s.model or "",
            telemetry_age_s=max(0.0, time.time() - s.received),
            interventions_per_min=per_min[0],
            off_track_per_min=per_min[1],
            lap_time_s=s.lap_time_s,
            inference_ms=s.inference_ms,
            confidence=s.confidence,
            loop_late_p99_ms=s.loop_late_p99_ms,
            drift_score=s.drift_score,
            drifted=s.drifted,
            degraded=degraded,
            detector=s.detector,
            detector_ms=s.detector_ms,
            feature_drift_score=s.feature_drift_score,
        )


def _feature_score(reference: InputStats, live: InputStats) -> float | None:
    """The feature drift where both summaries have features of the same model (None otherwise)."""
    if reference.features is None or live.features is None:
        return None
    try:
        return feature_drift(reference.features, live.features)
    except ValueError:  # a summary of another size: not this card's features
        return None
