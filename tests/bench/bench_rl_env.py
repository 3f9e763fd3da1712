"""RL environment throughput: paddock's DeepRacer training environment (the 160×120 camera rendered,
made gray and resized to 80×60, DeepRacer's reward params and the reward function each step) beside
gymnasium's CarRacing-v3 (Box2D + 96×96 pixels), each in one process and vectorised over processes
(SB3's SubprocVecEnv, as training uses), random actions, resets included, in the same run.

    python -m tests.bench.bench_rl_env [steps per measurement, default 1500] [workers, default 2]

CarRacing needs the `bench` extra (box2d, pygame).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.bench.bench_rl_train import _track
from trainer.rl.env import EnvSettings, TrainingEnv
from trainer.rl.files import default_metadata


def _settings() -> EnvSettings:
    return EnvSettings(track=_track(), metadata=default_metadata("discrete"))


def paddock_env() -> Any:
    return TrainingEnv(_settings())


def carracing_env() -> Any:
    import gymnasium as gym

    return gym.make("CarRacing-v3", continuous=False)


def single_rate(make: Callable[[], Any], n: int) -> float:
    env = make()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(n):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            env.reset()
    rate = n / (time.perf_counter() - start)
    env.close()
    return rate


def vector_rate(make: Callable[[], Any], n: int, workers: int) -> float:
    from stable_baselines3.common.vec_env import SubprocVecEnv

    env = SubprocVecEnv([make] * workers, start_method="forkserver")
    env.reset()
    rng = np.random.default_rng(0)
    steps = n // workers
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(env.action_space.n, size=workers))  # type: ignore[attr-defined]
    rate = steps * workers / (time.perf_counter() - start)
    env.close()
    return rate


def main(n: int = 1500, workers: int = 2) -> None:
    print(f"load average at start: {os.getloadavg()}, cores: {os.cpu_count()}, {n} steps per measurement")
    try:
        carracing_env().close()
        reference = True
    except Exception as exc:  # box2d or pygame missing
        print(f"CarRacing-v3 unavailable ({exc}): install the bench extra (box2d, pygame)")
        reference = False
    rows = [("paddock DeepRacer env (80x60 gray obs)", paddock_env)]
    if reference:
        rows.append(("gymnasium CarRacing-v3 (96x96 RGB)", carracing_env))
    results: dict[str, tuple[float, float]] = {}
    for name, make in rows:
        results[name] = (single_rate(make, n), vector_rate(make, n, workers))
    for name, (one, vec) in results.items():
        print(f"  {name:42s} 1 process {one:7.0f} steps/s   {workers} processes {vec:7.0f} steps/s")
    if reference:
        (p1, pv), (c1, cv) = results[rows[0][0]], results[rows[1][0]]
        print(f"  ratio paddock / CarRacing-v3: 1 process {p1 / c1:.1f}x, {workers} processes {pv / cv:.1f}x")
    print(f"load average at end: {os.getloadavg()}")


def test_bench_rl_env() -> None:
    main()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1500, int(sys.argv[2]) if len(sys.argv) > 2 else 2)
