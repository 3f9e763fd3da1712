"""Ingest counters: what the hub received, persisted, sealed, lost and rejected, per car.

Counting is plain integer arithmetic on the ingest threads (no locks on the hot path: each counter
has one writer thread). :meth:`IngestCounters.snapshot` gives the demo an :class:`IngestStats`; the
Prometheus collector in ``hub.service`` reads the same numbers at scrape time.
"""

import threading
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any


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


@dataclass
class IngestCounters:
    cars: dict[str, CarIngest] = field(default_factory=lambda: defaultdict(CarIngest))
    malformed: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    shards_sealed: int = 0
    shard_bytes: int = 0
    telemetry_unparsed: int = 0
    stale_deaths: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def car(self, car: str) -> CarIngest:
        return self.cars[car]

    def add_malformed(self, car: str | None, kind: str, reason: str) -> None:
        with self._lock:
            self.malformed[(car or "", kind, reason)] += 1
            if car:
                self.cars[car].malformed += 1

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
