"""The car's own Prometheus ``/metrics`` (the ``[metrics]`` section of the car config; off by default).

prometheus_client's HTTP server answers scrapes on its own thread. Counters and gauges are read
from the running car when a scrape arrives (:class:`CarReadings`), so they cost the control loop
nothing; the loop's lateness, inference time and confidence are histograms, observed on the
control thread once per tick (three ``observe`` calls, about 2 µs each) so that every tick counts,
not just those a scrape happens to see. prometheus_client is imported only when metrics are on:
a car without them never loads it.

Every metric carries the car's id as the label ``car`` (one Prometheus may scrape a whole fleet).
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from edge.config import MetricsSection

log = logging.getLogger(__name__)

# Seconds. A tick at 20-50 Hz has a 20-50 ms budget; lateness beyond a period is a missed tick.
LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
INFERENCE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
LAP_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0)


@dataclass(frozen=True, slots=True)
class CarReadings:
    """What a scrape reads from the car (the daemon builds one per scrape)."""

    ticks: int
    missed_ticks: int
    interventions: int
    off_track: int
    last_lap_s: float | None
    input_drift_psi: float | None  # the last telemetry window's pixel PSI against the card
    feature_drift: float | None  # its feature shift against the card (models with features)
    model: str | None  # name:version
    model_sha256: str | None
    outbox_frames: int  # recorded frames in the spool, not yet acknowledged by the broker
    outbox_events: int  # events waiting for the broker
    connected: bool
    mode: str
    detector: str | None = None  # the detector slot's model (name:version); None while empty
    detector_runs: int = 0
    safety_holds: int = 0
    obstacle: str | None = None  # the detector's last obstacle-ahead class ("none" when clear)
    surface: str | None = None


class _Readings:
    """A prometheus_client collector over :class:`CarReadings` (counters and gauges)."""

    def __init__(self, car: str, read: Callable[[], CarReadings]) -> None:
        self.car = car
        self.read = read

    def counter(self, name: str, doc: str, value: float) -> Any:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(f"paddock_car_{name}", doc, labels=["car"])
        family.add_metric([self.car], value)
        return family

    def gauge(self, name: str, doc: str, value: float | None) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(f"paddock_car_{name}", doc, labels=["car"])
        if value is not None:
            family.add_metric([self.car], value)
        return family

    def which(self, name: str, doc: str, label: str, value: str | None) -> Any:
        """A gauge that is 1 for the one current ``label`` (none while ``value`` is None)."""
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(f"paddock_car_{name}", doc, labels=["car", label])
        if value is not None:
            family.add_metric([self.car, value], 1.0)
        return family

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        r = self.read()
        counter, gauge = self.counter, self.gauge
        yield counter("ticks", "Control ticks run since boot.", r.ticks)
        yield counter(
            "missed_ticks",
            "Control ticks skipped since boot (the loop fell a period behind).",
            r.missed_ticks,
        )
        yield counter(
            "interventions",
            "Interventions since boot: human takeover, deadman, safety rule.",
            r.interventions,
        )
        yield counter("off_track", "Off-track moments since boot.", r.off_track)
        yield gauge("last_lap_seconds", "The last completed lap's time.", r.last_lap_s)
        yield gauge(
            "input_drift_psi", "PSI of the last input statistics against the model card.", r.input_drift_psi
        )
        yield gauge(
            "feature_drift",
            "Shift of the network's features against the model card, in "
            "standard deviations (0.2 small, 0.5 medium, 0.8 large).",
            r.feature_drift,
        )
        yield gauge("outbox_frames", "Recorded frames waiting in the spool for the broker.", r.outbox_frames)
        yield gauge("outbox_events", "Events waiting for the broker.", r.outbox_events)
        yield gauge("broker_connected", "1 while the car is connected to its broker.", float(r.connected))
        yield self.which("mode", "1 for the car's current mode.", "mode", r.mode)
        model = GaugeMetricFamily(
            "paddock_car_model_info",
            "The active pilot model (1).",
            labels=["car", "model", "name", "version", "sha256"],
        )
        if r.model:
            name, _, version = r.model.partition(":")
            model.add_metric([self.car, r.model, name, version, r.model_sha256 or ""], 1.0)
        yield model
        yield from self._detector(r)

    def _detector(self, r: CarReadings) -> Iterator[Any]:
        """The detector slot: nothing at all on a car without one."""
        if r.detector is None:
            return
        yield self.which("detector_info", "The active detector model (1).", "model", r.detector)
        yield self.counter("detector_runs", "Detector inferences since boot.", r.detector_runs)
        yield self.counter(
            "safety_holds", "Times the safety rule held the car for an obstacle, since boot.", r.safety_holds
        )
        yield self.which("obstacle_class", "1 for the detector's last obstacle class.", "class", r.obstacle)
        yield self.which("surface_class", "1 for the detector's last surface class.", "class", r.surface)


class CarMetrics:
    """The registry, its histograms and the HTTP server; :meth:`start` binds, :meth:`stop` closes."""

    def __init__(self, car: str, section: MetricsSection, read: Callable[[], CarReadings]) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.section = section
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Readings(car, read))

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Any:
            return Histogram(name, doc, ["car"], registry=self.registry, buckets=buckets).labels(car)

        self._late = histogram(
            "paddock_car_loop_lateness_seconds", "How late each control tick started.", LATENESS_BUCKETS
        )
        self._inference = histogram(
            "paddock_car_inference_seconds", "The pilot's time per inference.", INFERENCE_BUCKETS
        )
        self._confidence = histogram(
            "paddock_car_confidence",
            "The model's output confidence per tick (categorical models).",
            CONFIDENCE_BUCKETS,
        )
        self._laps = histogram("paddock_car_lap_time_seconds", "Completed laps' times.", LAP_BUCKETS)
        self._server: Any = None
        self._thread: Any = None
        self.port: int | None = None

    def start(self) -> int:
        """Listen on the section's address; returns the port (the chosen one for port 0)."""
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(
            self.section.port, addr=self.section.bind, registry=self.registry
        )
        self.port = int(self._server.server_port)
        return self.port

    def observe_tick(self, late_s: float, inference_ms: float | None, confidence: float | None) -> None:
        """One control tick (control thread)."""
        self._late.observe(late_s)
        if inference_ms is not None:
            self._inference.observe(inference_ms / 1000.0)
        if confidence is not None:
            self._confidence.observe(confidence)

    def observe_lap(self, seconds: float) -> None:
        self._laps.observe(seconds)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
