"""Ingest counters: what the hub received, persisted, sealed, lost and rejected, per car.

Counting is plain integer arithmetic on the ingest threads (no locks on the hot path: each counter
has one writer thread). :meth:`IngestCounters.snapshot` gives the demo an :class:`IngestStats`; the
Prometheus collector (:class:`HubCollector`) reads the same numbers at scrape time.
"""

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.telemetry.sinks import SinkWorker


@dataclass(slots=True)
class CarIngest:
    """Counters of one car since the hub started (``missing``/``gaps`` over all its sessions)."""

    frames_received: int = 0
    frames_persisted: int = 0
    frames_sealed: int = 0
    duplicates: int = 0
    missing: int = 0
    gaps: int = 0
    malformed: int = 0
    preview_frames: int = 0
    telemetry: int = 0
    events: int = 0


@dataclass(frozen=True, slots=True)
class IngestStats:
    """A snapshot of ingest, for printing. ``frames_persisted`` are durable on the hub's disk;
    ``frames_sealed`` are in shards in the object store; ``missing`` counts seqs never received
    (inside recorded ranges); ``malformed`` counts messages rejected, by reason."""

    frames_received: int
    frames_persisted: int
    frames_sealed: int
    duplicates: int
    missing: int
    gaps: int
    malformed: int
    malformed_by_reason: dict[str, int]
    cars: dict[str, CarIngest]
    shards_sealed: int
    spool_bytes: int
    spool_lag_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        parts = [
            f"{self.frames_persisted} frames persisted",
            f"{self.frames_sealed} sealed in {self.shards_sealed} shards",
            f"{self.missing} lost in {self.gaps} gaps",
            f"{self.duplicates} duplicates",
            f"{self.malformed} malformed",
        ]
        return ", ".join(parts)


MAX_CARS = 1024
MAX_MALFORMED_KEYS = 4096
OTHER_CARS = "(others)"  # where the counts of cars no longer tracked one by one go


def _fold(into: CarIngest, counts: CarIngest) -> None:
    for name in CarIngest.__slots__:
        setattr(into, name, getattr(into, name) + getattr(counts, name))


@dataclass
class IngestCounters:
    """Per-car counters for at most ``max_cars`` cars: beyond that the car counted first is folded
    into :data:`OTHER_CARS`, so invented car ids cannot grow the hub's memory and totals stay right."""

    cars: dict[str, CarIngest] = field(default_factory=dict)
    malformed: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    max_cars: int = MAX_CARS
    shards_sealed: int = 0
    shard_bytes: int = 0
    telemetry_unparsed: int = 0
    stale_deaths: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def car(self, car: str) -> CarIngest:
        """The car's counters, created on first use (the ingest threads count into them)."""
        counts = self.cars.get(car)
        if counts is not None:
            return counts
        with self._lock:
            return self._create(car)

    def _create(self, car: str) -> CarIngest:
        counts = self.cars.get(car)
        if counts is None:
            counts = self.cars[car] = CarIngest()
            while len(self.cars) > self.max_cars + 1:  # + OTHER_CARS itself
                oldest = next(c for c in self.cars if c != OTHER_CARS)
                other = self.cars.get(OTHER_CARS) or self.cars.setdefault(OTHER_CARS, CarIngest())
                _fold(other, self.cars.pop(oldest))
        return counts

    def of(self, car: str) -> CarIngest | None:
        """The car's counters if the hub has counted anything for it (creates nothing)."""
        return self.cars.get(car)

    def add_malformed(self, car: str | None, kind: str, reason: str, n: int = 1) -> None:
        with self._lock:
            key = (car or "", kind, reason)
            if key not in self.malformed and len(self.malformed) >= MAX_MALFORMED_KEYS:
                key = (OTHER_CARS, kind, reason)
            self.malformed[key] += n
            if car:
                self._create(car).malformed += n

    def snapshot(self, spool_bytes: int = 0, spool_lag_bytes: int = 0) -> IngestStats:
        cars = {name: CarIngest(**asdict(c)) for name, c in list(self.cars.items())}
        by_reason: dict[str, int] = defaultdict(int)
        for (_car, kind, reason), n in list(self.malformed.items()):
            by_reason[f"{kind}: {reason}"] += n
        return IngestStats(
            frames_received=sum(c.frames_received for c in cars.values()),
            frames_persisted=sum(c.frames_persisted for c in cars.values()),
            frames_sealed=sum(c.frames_sealed for c in cars.values()),
            duplicates=sum(c.duplicates for c in cars.values()),
            missing=sum(c.missing for c in cars.values()),
            gaps=sum(c.gaps for c in cars.values()),
            malformed=sum(by_reason.values()),
            malformed_by_reason=dict(by_reason),
            cars=cars,
            shards_sealed=self.shards_sealed,
            spool_bytes=spool_bytes,
            spool_lag_bytes=spool_lag_bytes,
        )


@dataclass(frozen=True, slots=True)
class HubGauges:
    """What the collector reads from the spool, the sealer, ingest and the catalog at scrape time."""

    spool_batches: int
    spool_fsync_seconds: float
    spool_bytes: int
    spool_lag_bytes: int
    store_errors: int
    mqtt_connected: bool
    ack_outstanding: int
    cars_online: int


class HubCollector(Collector):
    """Prometheus metrics read from the hub's counters at scrape time.

    The collaborators are passed in (counters, the sink workers, a function for the gauges), so
    telemetry knows nothing of the parts it reports on."""

    def __init__(
        self, counters: IngestCounters, sinks: Sequence[SinkWorker], gauges: Callable[[], HubGauges]
    ) -> None:
        self.counters = counters
        self.sinks = sinks
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        yield from self._per_car()
        yield from self._totals(self.gauges())
        yield from self._sinks()

    def _per_car(self) -> Iterator[Metric]:
        cars = dict(self.counters.cars)

        def per_car(name: str, doc: str, attr: str, counter: bool = True) -> Metric:
            m: CounterMetricFamily | GaugeMetricFamily
            if counter:
                m = CounterMetricFamily(f"paddock_hub_{name}", doc, labels=["car"])
            else:
                m = GaugeMetricFamily(f"paddock_hub_{name}", doc, labels=["car"])
            for car, c in sorted(cars.items()):
                m.add_metric([car], getattr(c, attr))
            return m

        yield per_car(
            "frames_received", "Recorded frames received (valid, before the spool).", "frames_received"
        )
        yield per_car(
            "frames_persisted",
            "Frames durable in the spool (acknowledged to the broker).",
            "frames_persisted",
        )
        yield per_car("frames_sealed", "Frames sealed into shards in the object store.", "frames_sealed")
        yield per_car(
            "frames_duplicate", "Frames received again (resent after a reconnect) and dropped.", "duplicates"
        )
        yield per_car("preview_frames", "QoS 0 preview frames seen (not recorded).", "preview_frames")
        yield per_car("telemetry_messages", "Telemetry messages received.", "telemetry")
        yield per_car("events", "Events received.", "events")
        yield per_car(
            "frames_missing", "Seqs missing inside recorded ranges (frames lost).", "missing", counter=False
        )
        yield per_car("gaps", "Gaps (missing seq ranges) in recorded sessions.", "gaps", counter=False)
        malformed = CounterMetricFamily(
            "paddock_hub_malformed", "Messages rejected as malformed.", labels=["car", "kind", "reason"]
        )
        for (car, kind, reason), n in sorted(self.counters.malformed.items()):
            malformed.add_metric([car, kind, reason], n)
        yield malformed

    def _totals(self, g: HubGauges) -> Iterator[Metric]:
        counters = self.counters
        yield CounterMetricFamily(
            "paddock_hub_shards_sealed", "Shards written to the store.", value=counters.shards_sealed
        )
        yield CounterMetricFamily(
            "paddock_hub_shard_bytes", "Bytes of shards written.", value=counters.shard_bytes
        )
        yield CounterMetricFamily(
            "paddock_hub_stale_deaths",
            "Deaths ignored as older than the birth.",
            value=counters.stale_deaths,
        )
        yield CounterMetricFamily(
            "paddock_hub_spool_batches", "fsync batches written.", value=g.spool_batches
        )
        yield CounterMetricFamily(
            "paddock_hub_spool_fsync_seconds", "Time spent in fsync.", value=g.spool_fsync_seconds
        )
        yield GaugeMetricFamily("paddock_hub_spool_bytes", "Bytes in spool segments.", value=g.spool_bytes)
        yield GaugeMetricFamily(
            "paddock_hub_spool_lag_bytes", "Durable spool bytes not yet sealed.", value=g.spool_lag_bytes
        )
        yield GaugeMetricFamily(
            "paddock_hub_store_errors", "Failed object-store writes (retried).", value=g.store_errors
        )
        yield GaugeMetricFamily(
            "paddock_hub_mqtt_connected", "1 while connected to the broker.", value=int(g.mqtt_connected)
        )
        yield GaugeMetricFamily(
            "paddock_hub_ack_outstanding",
            "QoS 1 messages received, not yet acknowledged.",
            value=g.ack_outstanding,
        )
        yield GaugeMetricFamily(
            "paddock_hub_cars_online", "Cars whose last status is a birth.", value=g.cars_online
        )

    def _sinks(self) -> Iterator[Metric]:
        written = CounterMetricFamily(
            "paddock_hub_sink_written", "Records written by each sink.", labels=["sink"]
        )
        dropped = CounterMetricFamily(
            "paddock_hub_sink_dropped", "Records a full sink queue dropped.", labels=["sink"]
        )
        errors = CounterMetricFamily(
            "paddock_hub_sink_errors", "Failed sink writes (retried).", labels=["sink"]
        )
        queued = GaugeMetricFamily(
            "paddock_hub_sink_queued", "Records waiting in each sink's queue.", labels=["sink"]
        )
        for w in self.sinks:
            written.add_metric([w.name], w.stats.written)
            dropped.add_metric([w.name], w.stats.dropped)
            errors.add_metric([w.name], w.stats.errors)
            queued.add_metric([w.name], w.queued)
        yield written
        yield dropped
        yield errors
        yield queued


@dataclass(frozen=True, slots=True)
class ModelHealthRow:
    """One car's model health as the fleet monitor sees it (None: not reported yet)."""

    car: str
    model: str
    telemetry_age_s: float
    interventions_per_min: float | None
    off_track_per_min: float | None
    lap_time_s: float | None
    inference_ms: float | None
    confidence: float | None
    loop_late_p99_ms: float | None
    drift_score: float | None
    drifted: bool
    degraded: bool
    detector: str | None = None  # the detector slot's model (name:version), if the car runs one
    detector_ms: float | None = None
    feature_drift_score: float | None = None  # the network's feature drift (models with features)


_FLEET_GAUGES = [
    ("telemetry_age_seconds", "Seconds since the car's last telemetry.", "telemetry_age_s"),
    (
        "interventions_per_minute",
        "Interventions (takeover, deadman, safety rule) per minute.",
        "interventions_per_min",
    ),
    ("off_track_per_minute", "Off-track moments per minute.", "off_track_per_min"),
    ("lap_time_seconds", "The last completed lap's time.", "lap_time_s"),
    ("inference_ms", "Mean model inference time.", "inference_ms"),
    ("confidence", "Mean output confidence (categorical models).", "confidence"),
    ("loop_late_p99_ms", "99th percentile of the control loop's lateness.", "loop_late_p99_ms"),
    (
        "drift_score",
        "PSI of the live input statistics against the card's training statistics.",
        "drift_score",
    ),
    (
        "feature_drift_score",
        "Mean shift of the network's features (pooled standard deviations) against the card's.",
        "feature_drift_score",
    ),
    ("drifted", "1 while the model's inputs have drifted (thresholds in hub.toml).", "drifted"),
    ("degraded", "1 while the model drives worse than hub.toml allows.", "degraded"),
]


class FleetCollector(Collector):
    """Per car and model: the fleet monitor's figures, as ``paddock_fleet_*`` gauges."""

    def __init__(self, rows: Callable[[], Sequence[ModelHealthRow]], drift_threshold: float) -> None:
        self.rows = rows
        self.drift_threshold = drift_threshold

    def collect(self) -> Iterator[Metric]:
        rows = self.rows()
        for name, doc, attr in _FLEET_GAUGES:
            m = GaugeMetricFamily(f"paddock_fleet_{name}", doc, labels=["car", "model"])
            for r in rows:
                value = getattr(r, attr)
                if value is not None:
                    m.add_metric([r.car, r.model], float(value))
            yield m
        yield from _detector_gauges(rows)
        yield GaugeMetricFamily(
            "paddock_fleet_drift_threshold",
            "The drift threshold (PSI) in hub.toml.",
            value=self.drift_threshold,
        )


def _detector_gauges(rows: Sequence[ModelHealthRow]) -> Iterator[Metric]:
    """The detector each car runs beside its pilot (``model`` is the detector's name:version)."""
    running = GaugeMetricFamily(
        "paddock_fleet_detector",
        "1 for the detector model a car runs beside its pilot.",
        labels=["car", "model"],
    )
    inference = GaugeMetricFamily(
        "paddock_fleet_detector_inference_ms", "Mean detector inference time.", labels=["car", "model"]
    )
    for r in rows:
        if r.detector is None:
            continue
        running.add_metric([r.car, r.detector], 1.0)
        if r.detector_ms is not None:
            inference.add_metric([r.car, r.detector], r.detector_ms)
    yield running
    yield inference


@dataclass(frozen=True, slots=True)
class FeedbackSize:
    """The feedback dataset: the sessions of frames where a model failed, and their frames."""

    sessions: int
    frames: int


class FeedbackMetrics(Collector):
    """``paddock_feedback_sessions`` and ``paddock_feedback_frames``: how much the feedback dataset
    holds for the next retraining."""

    def __init__(self, size: Callable[[], FeedbackSize]) -> None:
        self.size = size

    def collect(self) -> Iterator[Metric]:
        size = self.size()
        yield GaugeMetricFamily(
            "paddock_feedback_sessions", "Sessions in the feedback dataset.", value=size.sessions
        )
        yield GaugeMetricFamily(
            "paddock_feedback_frames", "Frames in the feedback dataset's sessions.", value=size.frames
        )
