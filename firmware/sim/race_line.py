"""A racing line and the driver that follows it, shared by the optimiser and the car daemon.

:class:`RaceLineDriver` is the project's expert (:class:`firmware.sim.expert.ExpertDriver`: pure
pursuit from ground truth) pointed at a racing line, with the line's own speed profile in place of
the expert's curvature rule. The optimiser (``paddock race optimize``) writes its line as
``line.csv``; :func:`read_line` reads that file back, so a car's ``race-line`` pilot can drive it.

``line.csv`` has a header and one row per sample along the line, in the driving direction (the
last row joins the first): ``s, x, y, offset_m, speed_mps, curvature`` — distance along the line
(m), position (m), offset left of the centre line (m), target speed (m/s) and signed curvature (1/m).
Only ``x``, ``y`` and ``speed_mps`` are needed to drive it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from firmware.sim.expert import ExpertConfig, ExpertDriver
from firmware.sim.obstacles import Obstacle
from firmware.sim.track import Track
from firmware.sim.world import WorldConfig

FloatArray = NDArray[np.float64]

LINE_COLUMNS = ("s", "x", "y", "offset_m", "speed_mps", "curvature")

# Pure pursuit tuned for the line's higher speeds: a longer preview for the braking points.
RACE_EXPERT = ExpertConfig(max_speed=4.0, lookahead_time=0.15, preview_time=0.3)


class LineFileError(ValueError):
    """A line file that cannot be read or does not describe a drivable line."""


@dataclass(frozen=True, slots=True)
class RaceLine:
    points: FloatArray  # (K, 2), closed implicitly
    speeds: FloatArray  # (K,) m/s


def line_csv(
    points: NDArray[np.floating],
    speeds: NDArray[np.floating],
    offsets: NDArray[np.floating],
    curvature: NDArray[np.floating],
) -> str:
    """The text of a ``line.csv`` for a line sampled at ``points`` (see the module's docstring)."""
    pts = np.asarray(points, dtype=np.float64)
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(LINE_COLUMNS)
    for row in zip(s, pts[:, 0], pts[:, 1], offsets, speeds, curvature, strict=True):
        writer.writerow([f"{v:.5f}" for v in row])
    return text.getvalue()


def read_line(path: str | Path) -> RaceLine:
    """The line in a ``line.csv``; :class:`LineFileError` says what is wrong with a bad file."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise LineFileError(f"cannot read the racing line {path}: {exc.strerror or exc}") from None
    try:
        xy = np.array([[float(r["x"]), float(r["y"])] for r in rows], dtype=np.float64)
        speeds = np.array([float(r["speed_mps"]) for r in rows], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise LineFileError(f"{path}: not a racing line (columns {', '.join(LINE_COLUMNS)})") from None
    if len(xy) < 4 or not np.isfinite(xy).all() or not np.isfinite(speeds).all() or (speeds <= 0).any():
        raise LineFileError(f"{path}: a racing line needs at least 4 rows of finite positions, speeds > 0")
    return RaceLine(xy, speeds)


class RaceLineDriver(ExpertDriver):
    """The expert following ``points`` (``K×2``, closed implicitly) at ``speeds`` (m/s, one per point)."""

    def __init__(
        self,
        track: Track,
        points: NDArray[np.floating],
        speeds: NDArray[np.floating],
        world_config: WorldConfig | None = None,
        config: ExpertConfig | None = None,
        speed_scale: float = 1.0,
        seed: int | None = None,
    ) -> None:
        car = (world_config or WorldConfig()).car
        pts = np.asarray(points, dtype=np.float64)
        v = np.asarray(speeds, dtype=np.float64)
        if v.shape != (len(pts),) or not np.isfinite(v).all() or (v <= 0).any():
            raise ValueError("a racing line needs one positive, finite speed per point")
        super().__init__(track, car, config or RACE_EXPERT, line=pts, seed=seed)
        # The expert resamples the line; carry the speeds over by arc length.
        self.speed_profile = np.clip(_along(pts, v, self.path) * speed_scale, car.min_speed, car.max_speed)
        self._line_speeds = self.speed_profile

    def set_obstacles(self, obstacles: Sequence[Obstacle]) -> None:
        """Plan round obstacles as the expert does, but keep the line's own speeds: the expert's
        profile would replace them (it slows only where it passes one, so take the slower of both)."""
        super().set_obstacles(obstacles)
        line = self._line_speeds
        self.speed_profile = np.minimum(line, self.speed_profile) if self.passing.any() else line

    @classmethod
    def from_file(
        cls, track: Track, path: str | Path, world_config: WorldConfig | None = None
    ) -> RaceLineDriver:
        line = read_line(path)
        return cls(track, line.points, line.speeds, world_config)


def _along(points: FloatArray, values: FloatArray, path: FloatArray) -> FloatArray:
    """``values`` given at ``points`` (a closed line), interpolated at the nearest place on ``path``."""
    closed = np.vstack([points, points[:1]])
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])
    nearest = np.array([int(np.argmin(np.hypot(*(points - p).T))) for p in path])
    # Arc position of each path point, then linear interpolation round the loop.
    pos = cum[nearest]
    return np.asarray(np.interp(pos, cum, np.append(values, values[0])), dtype=np.float64)
