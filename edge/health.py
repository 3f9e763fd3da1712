"""How the car's model is doing: interventions, off-track moments and lap times, counted from the
events the control loop emits (so the telemetry reports what the event stream says)."""

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelHealth:
    """Counters since boot; written by the control thread, read by the telemetry task."""

    interventions: int = 0
    off_track: int = 0
    last_lap_s: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        with self._lock:
            if kind == "intervention":
                self.interventions += 1
            elif kind == "off_track":
                self.off_track += 1
            elif (
                kind == "lap" and isinstance(event.get("lap_time_s"), int | float) and event["lap_time_s"] > 0
            ):
                self.last_lap_s = float(event["lap_time_s"])
