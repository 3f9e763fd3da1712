"""Driving an optimised line in the real simulator: the expert's controller on the line, at its speeds.

:class:`RaceLineDriver` is the project's expert (:class:`firmware.sim.expert.ExpertDriver`: pure
pursuit from ground truth) pointed at the racing line, with the line's own speed profile in place
of the expert's curvature rule. :func:`replay` drives it in :class:`firmware.sim.World` and reports
what the simulator measured: lap times and wheels off the track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from firmware.sim import ExpertConfig, ExpertDriver, World, WorldConfig, drive
from firmware.sim.track import Track
from trainer.race.line import LineConfig, LineEvaluator

FloatArray = NDArray[np.float64]

# Pure pursuit tuned for the line's higher speeds: a longer preview for the braking points.
RACE_EXPERT = ExpertConfig(max_speed=4.0, lookahead_time=0.15, preview_time=0.3)


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


def _along(points: FloatArray, values: FloatArray, path: FloatArray) -> FloatArray:
    """``values`` given at ``points`` (a closed line), interpolated at the nearest place on ``path``."""
    closed = np.vstack([points, points[:1]])
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])
    nearest = np.array([int(np.argmin(np.hypot(*(points - p).T))) for p in path])
    # Arc position of each path point, then linear interpolation round the loop.
    pos = cum[nearest]
    return np.asarray(np.interp(pos, cum, np.append(values, values[0])), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Replay:
    """What the simulator measured driving a line."""

    lap_times: list[float]
    wheels_off_steps: int  # steps with at least one wheel off the track
    off_track: int  # times all four wheels left the track
    finished: bool
    trace: FloatArray  # (steps + 1, 2) front-point positions
    speeds: FloatArray  # (steps + 1,)

    @property
    def best_lap(self) -> float | None:
        return min(self.lap_times) if self.lap_times else None

    @property
    def clean(self) -> bool:
        return self.finished and self.wheels_off_steps == 0 and self.off_track == 0


def replay(
    track: Track,
    driver: ExpertDriver,
    laps: int = 2,
    world_config: WorldConfig | None = None,
    seed: int = 0,
) -> Replay:
    """Drive ``laps`` laps with ``driver`` from a standing start on the finish line."""
    world = World(track, world_config or WorldConfig(), seed=seed)
    driver.reset()
    wheels_off = 0

    def count(status: object) -> None:
        nonlocal wheels_off
        wheels_off += not getattr(status, "all_wheels_on_track", True)

    result = drive(world, driver, laps, on_step=count)
    return Replay(
        lap_times=list(result.lap_times),
        wheels_off_steps=wheels_off,
        off_track=result.off_track,
        finished=result.finished,
        trace=result.trace,
        speeds=result.speeds,
    )


class ReplayEvaluator(LineEvaluator):
    """A slower, exact fitness: each genome's line driven in the simulator (``laps`` laps from a
    standing start); the total time plus ``wheel_off_penalty_s`` per step with a wheel off the track
    and the fast evaluator's penalties. A lap that is not finished scores ``unfinished_s``."""

    def __init__(
        self,
        track: Track,
        config: LineConfig | None = None,
        laps: int = 1,
        wheel_off_penalty_s: float = 0.1,
        unfinished_s: float = 1000.0,
    ) -> None:
        super().__init__(track, config)
        self.laps = laps
        self.wheel_off_penalty_s = wheel_off_penalty_s
        self.unfinished_s = unfinished_s

    def __getstate__(self) -> dict[str, object]:
        return super().__getstate__() | {
            "laps": self.laps,
            "wheel_off_penalty_s": self.wheel_off_penalty_s,
            "unfinished_s": self.unfinished_s,
        }

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}-replay{self.laps}"

    def evaluate_batch(self, genes: NDArray[np.floating]) -> FloatArray:
        return np.array([self.replay_fitness(g) for g in np.asarray(genes, dtype=np.float64)])

    def replay_fitness(self, genes: NDArray[np.floating]) -> float:
        estimate = self.estimate(genes)
        run = replay(
            self.frame.track,
            RaceLineDriver(self.frame.track, estimate.points, estimate.speeds),
            laps=self.laps,
        )
        if not run.finished:
            return self.unfinished_s + estimate.penalty
        return sum(run.lap_times) + self.wheel_off_penalty_s * run.wheels_off_steps + estimate.penalty
