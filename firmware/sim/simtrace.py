"""DeepRacer's simtrace CSV: one row per step, the 19 columns of deepracer-simapp's ``StepMetrics``,
so existing DeepRacer log-analysis notebooks read paddock runs unchanged."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

SIMTRACE_COLUMNS: tuple[str, ...] = (
    "episode",
    "steps",
    "X",
    "Y",
    "yaw",
    "steer",
    "throttle",
    "action",
    "reward",
    "done",
    "all_wheels_on_track",
    "progress",
    "closest_waypoint",
    "track_len",
    "tstamp",
    "episode_status",
    "pause_duration",
    "obstacle_crash_counter",
    "wall_clock",
)


def closest_waypoint(params: dict[str, Any]) -> int:
    """The nearer of ``closest_waypoints`` to the car, as DeepRacer's simtrace records it."""
    prev, nxt = params["closest_waypoints"]
    waypoints = params["waypoints"]
    x, y = params["x"], params["y"]
    d_prev = math.hypot(x - waypoints[prev][0], y - waypoints[prev][1])
    d_next = math.hypot(x - waypoints[nxt][0], y - waypoints[nxt][1])
    return int(nxt if d_next < d_prev else prev)


class SimTraceWriter:
    """Writes simtrace rows to a CSV file (header first)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("w", newline="")
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(SIMTRACE_COLUMNS)
        self.rows = 0

    def write(
        self,
        *,
        episode: int,
        params: dict[str, Any],
        action: int | str,
        reward: float,
        done: bool,
        episode_status: str,
    ) -> None:
        """One step. ``params`` is DeepRacer's reward params after the step; ``action`` an index
        (discrete) or ``"[steering_deg speed]"`` (continuous)."""
        self._csv.writerow(
            (
                episode,
                params["steps"],
                f"{params['x']:.4f}",
                f"{params['y']:.4f}",
                f"{params['heading']:.4f}",
                f"{params['steering_angle']:.2f}",
                f"{params['speed']:.2f}",
                action,
                f"{reward:.4f}",
                done,
                params["all_wheels_on_track"],
                f"{params['progress']:.4f}",
                closest_waypoint(params),
                f"{params['track_length']:.2f}",
                f"{params['sim_time']:.3f}",
                episode_status,
                "0.00",
                0,
                f"{time.time():.4f}",
            )
        )
        self.rows += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> SimTraceWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
