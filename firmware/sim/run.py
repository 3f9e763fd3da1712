"""Drive a world for some laps with a policy, recording what people and tools look at."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from firmware.sim.media import VideoWriter
from firmware.sim.reward import RewardFunction, deepracer_params
from firmware.sim.simtrace import SimTraceWriter
from firmware.sim.world import World, WorldStatus

Policy = Callable[[World], tuple[float, float]]
"""Maps the world (ground truth, or ``world.render()`` for a camera-only model) to
``(steering, throttle)`` in [-1, 1]."""


@dataclass
class RunResult:
    track: str
    laps: int
    lap_times: list[float]
    steps: int
    sim_time: float
    off_track: int  # times the car left the track
    crashes: int
    finished: bool  # all requested laps completed
    total_reward: float
    trace: NDArray[np.float64] = field(repr=False)  # (steps + 1, 2) front-point positions
    speeds: NDArray[np.float64] = field(repr=False)  # (steps + 1,) m/s

    @property
    def best_lap(self) -> float | None:
        return min(self.lap_times) if self.lap_times else None


def drive(
    world: World,
    policy: Policy,
    laps: int = 1,
    *,
    max_time_s: float | None = None,
    recover: bool = True,
    reward_function: RewardFunction | None = None,
    simtrace: SimTraceWriter | None = None,
    video: VideoWriter | None = None,
    episode: int = 0,
    on_step: Callable[[WorldStatus], None] | None = None,
) -> RunResult:
    """Step ``world`` with ``policy`` until ``laps`` laps are done (or ``max_time_s`` simulated
    seconds pass, by default two minutes a lap). After leaving the track or crashing the car is
    put back on the centre line (``recover``) or the run ends. The world is not reset first."""
    if laps < 1:
        raise ValueError("laps must be >= 1")
    limit = max_time_s if max_time_s is not None else 120.0 * laps
    start_lap = world.status.lap
    fx, fy = world.car.front_point()
    trace = [(fx, fy)]
    speeds = [world.car.state.speed]
    off_track = crashes = 0
    total_reward = 0.0
    status = world.status
    while status.lap - start_lap < laps and status.time < limit:
        steering, throttle = policy(world)
        status = world.step(steering, throttle)
        kinds = {e.kind for e in status.events}
        off_track += "off_track" in kinds
        crashes += "crash" in kinds
        done = status.lap - start_lap >= laps or status.time >= limit
        trouble = status.off_track or status.crashed
        if simtrace is not None or reward_function is not None:
            finished = done or (trouble and not recover)
            total_reward += _score(world, status, reward_function, simtrace, episode, done, finished)
        fx, fy = world.car.front_point()
        trace.append((fx, fy))
        speeds.append(status.speed)
        if video is not None:
            _video_frame(video, world, status, laps, status.lap - start_lap, (steering, throttle))
        if on_step is not None:
            on_step(status)
        if trouble:
            if not recover:
                break
            status = world.reset_to_track()
    return RunResult(
        track=world.track.name,
        laps=status.lap - start_lap,
        lap_times=list(status.lap_times[start_lap:]),
        steps=len(trace) - 1,
        sim_time=status.time,
        off_track=off_track,
        crashes=crashes,
        finished=status.lap - start_lap >= laps,
        total_reward=total_reward,
        trace=np.asarray(trace),
        speeds=np.asarray(speeds),
    )


def _score(
    world: World,
    status: WorldStatus,
    reward_function: RewardFunction | None,
    simtrace: SimTraceWriter | None,
    episode: int,
    done: bool,
    finished: bool,
) -> float:
    """The step's reward (0 without a reward function), and its simtrace row."""
    params = deepracer_params(world)
    reward = reward_function(params) if reward_function is not None else 0.0
    if simtrace is not None:
        episode_status = (
            "lap_complete" if status.lap_completed else
            "crashed" if status.crashed else
            "off_track" if status.off_track else
            "reversed" if status.reversed else
            "time_up" if done else "in_progress"
        )  # fmt: skip
        simtrace.write(
            episode=episode,
            params=params,
            action=f"[{params['steering_angle']:.2f} {params['speed']:.2f}]",
            reward=reward,
            done=finished,
            episode_status=episode_status,
        )
    return reward


def _video_frame(
    video: VideoWriter,
    world: World,
    status: WorldStatus,
    laps: int,
    laps_done: int,
    action: tuple[float, float],
) -> None:
    fx, fy = world.car.front_point()
    steering, throttle = action
    hud = (
        f"lap {min(laps_done + 1, laps)}/{laps}  {status.time - _lap_start(status):5.2f} s  "
        f"{status.speed:4.2f} m/s  steer {steering:+.2f}  throttle {throttle:.2f}"
    )
    video.add(world.render(), fx, fy, hud)


def _lap_start(status: WorldStatus) -> float:
    return sum(status.lap_times)
