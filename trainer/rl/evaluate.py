"""Evaluating a trained model as DeepRacer's console does.

Each *trial* starts at the start line and drives until a lap is complete (or ``max_time_s`` of
simulated time passes, or the car drives backwards or stops). Going off track or hitting a box
does not end a trial: the car is put back on the track (clear of the box) and ``penalty_s`` (5 s,
DeepRacer's default) is added to the lap time. Per trial: lap time (with penalties), completion %,
off-track and crash counts, status. Over all trials: completion, mean and best lap time and
*consistency* (the standard deviation of the completed trials' lap times).

The simtrace (``simtrace.csv``) holds one episode per trial, a ``prepare`` row first, and an
absolute clock (``tstamp`` continues across trials), as DeepRacer writes them, so deepracer-utils'
log analysis reads the right lap times. The policy is the deterministic one (argmax of a discrete
space, the mean of a continuous one), as on the car.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from firmware.sim.simtrace import SimTraceWriter
from trainer.rl.env import EnvSettings, TrainingEnv
from trainer.rl.files import load_model_dir, resolve_track

DEFAULT_PENALTY_S = 5.0


@dataclass
class EvalConfig:
    model_dir: Path
    track: str = "reinvent_base"
    trials: int = 3
    penalty_s: float = DEFAULT_PENALTY_S
    max_time_s: float = 180.0
    out: Path | None = None  # report, simtrace, video; default model_dir/evaluation-{track}
    video: bool = False
    race_type: str = "time_trial"
    obstacles: int = 3
    bot_cars: int = 3  # head_to_head
    bot_speed: float = 0.2  # m/s
    lane_change: bool = False
    seed: int = 0


@dataclass
class Trial:
    trial: int
    status: str  # lap_complete, time_up, reversed, immobilized
    completion_pct: float
    lap_time_s: float | None  # with penalties, completed trials only
    elapsed_s: float  # simulated seconds driven
    off_track: int
    crashes: int
    penalty_s: float
    steps: int


@dataclass
class EvalReport:
    model: str
    track: str
    trials: list[Trial] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        laps = [t.lap_time_s for t in self.trials if t.lap_time_s is not None]
        return {
            "trials": len(self.trials),
            "laps_completed": len(laps),
            "completion_pct": statistics.fmean(t.completion_pct for t in self.trials) if self.trials else 0.0,
            "mean_lap_time_s": statistics.fmean(laps) if laps else None,
            "best_lap_time_s": min(laps) if laps else None,
            "consistency_s": statistics.pstdev(laps) if len(laps) > 1 else (0.0 if laps else None),
            "off_track": sum(t.off_track for t in self.trials),
            "crashes": sum(t.crashes for t in self.trials),
            "clean_laps": sum(1 for t in self.trials if t.lap_time_s is not None and t.penalty_s == 0),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "track": self.track,
            "summary": self.summary,
            "trials": [asdict(t) for t in self.trials],
        }


Policy = Callable[[Any], Any]


def load_policy(model_dir: Path) -> tuple[Policy, dict[str, Any]]:
    """The trained policy of ``model_dir`` (deterministic) and its observation settings."""
    from stable_baselines3 import PPO, SAC

    from trainer.rl.clone import trained_model_path

    files = load_model_dir(model_dir)
    cls = SAC if files.metadata.training_algorithm == "sac" else PPO
    model = cls.load(trained_model_path(model_dir), device="cpu")
    observation = {"width": 80, "height": 60}
    try:
        observation |= json.loads((model_dir / "training.json").read_text())["observation"]
    except (OSError, ValueError, KeyError):
        pass

    def act(obs: Any) -> Any:
        action, _ = model.predict(obs, deterministic=True)
        return action

    return act, observation


def evaluate(
    config: EvalConfig, policy: Policy | None = None, on_trial: Callable[[Trial], None] | None = None
) -> EvalReport:
    files = load_model_dir(config.model_dir)
    observation: dict[str, Any] = {"width": 80, "height": 60}
    if policy is None:
        policy, observation = load_policy(config.model_dir)
    settings = EnvSettings(
        track=resolve_track(config.track),
        metadata=files.metadata.for_env(),
        reward_path=str(files.reward_path),
        width=int(observation["width"]),
        height=int(observation["height"]),
        stack_size=int(observation.get("stack_size", files.hyperparameters.stack_size)),
        max_steps=10**9,
        start_stride=0.0,
        race_type=config.race_type,
        obstacles=config.obstacles,
        bot_cars=config.bot_cars,
        bot_speed=config.bot_speed,
        lane_change=config.lane_change,
    )
    env = TrainingEnv(settings)
    out = config.out or config.model_dir / f"evaluation-{env.inner.world.track.name}"
    out.mkdir(parents=True, exist_ok=True)
    report = EvalReport(model=files.directory.name, track=env.inner.world.track.name)
    video = _video(out, env) if config.video else None
    clock = 0.0
    with SimTraceWriter(out / "simtrace.csv") as trace:
        for k in range(config.trials):
            trial, clock = _run_trial(env, policy, config, k, trace, clock, video)
            report.trials.append(trial)
            if on_trial is not None:
                on_trial(trial)
    if video is not None:
        video.close()
    (out / "evaluation.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _video(out: Path, env: TrainingEnv) -> Any:
    from firmware.sim.media import VideoWriter

    return VideoWriter(out / "evaluation.mp4", env.inner.world.track, 15)


def _run_trial(
    env: TrainingEnv,
    policy: Policy,
    config: EvalConfig,
    k: int,
    trace: SimTraceWriter,
    clock: float,
    video: Any,
) -> tuple[Trial, float]:
    obs, info = env.reset(seed=config.seed + k, options={"start_progress": 0.0})
    episode = k + 1
    trace.write(
        episode=episode,
        params=info["params"],
        action=-1,
        reward=0.0,
        done=False,
        episode_status="prepare",
    )
    off_track = crashes = 0
    status, progress, lap_time = "time_up", 0.0, None
    world = env.inner.world
    while True:
        action = policy(obs)
        obs, reward, _, _, info = env.step(action)
        params, status = info["params"], info["episode_status"]
        world = env.inner.world
        progress = max(progress, float(info["progress"]))
        time_up = world.status.time >= config.max_time_s
        done = status in ("lap_complete", "reversed", "immobilized", "reward_error") or time_up
        row_status = "time_up" if time_up and status == "in_progress" else status
        trace.write(
            episode=episode,
            params=params,
            action=_action_label(action),
            reward=float(reward),
            done=done,
            episode_status=row_status,
        )
        if video is not None:
            video.add(env.inner.world.render(), params["x"], params["y"], f"trial {episode} {status}")
        if status == "lap_complete":
            lap_time = float(info["lap_time"])
            progress = 100.0
        if done:
            status = row_status
            break
        if status in ("off_track", "crashed"):
            off_track += status == "off_track"
            crashes += status == "crashed"
            obs = env.recover(status)
    penalty = config.penalty_s * (off_track + crashes)
    elapsed = world.status.time
    trial = Trial(
        trial=episode,
        status=status,
        completion_pct=progress,
        lap_time_s=None if lap_time is None else lap_time + penalty,
        elapsed_s=elapsed,
        off_track=off_track,
        crashes=crashes,
        penalty_s=penalty,
        steps=world.status.steps,
    )
    return trial, clock + elapsed


def _action_label(action: Any) -> int | str:
    arr = np.asarray(action).reshape(-1)
    if arr.size == 1 and np.issubdtype(arr.dtype, np.integer):
        return int(arr[0])
    return "[" + " ".join(f"{v:.2f}" for v in arr) + "]"
