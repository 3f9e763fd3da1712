"""Driving an optimised line in the real simulator: the expert's controller on the line, at its speeds.

:class:`RaceLineDriver` (in :mod:`firmware.sim.race_line`, so the car daemon's ``race-line`` pilot
drives the same way) is the expert pointed at the racing line. :func:`replay` drives it in
:class:`firmware.sim.World` and reports what the simulator measured: lap times and wheels off the track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from firmware.sim import ExpertDriver, World, WorldConfig, drive
from firmware.sim.race_line import RACE_EXPERT, RaceLineDriver
from firmware.sim.track import Track
from trainer.race.line import LineConfig, LineEvaluator

FloatArray = NDArray[np.float64]

__all__ = ["RACE_EXPERT", "RaceLineDriver", "Replay", "ReplayEvaluator", "replay"]


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
