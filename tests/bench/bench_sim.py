"""Simulator speed: steps per second of physics + a 160×120 camera frame, on one CPU core, side by
side with gymnasium's CarRacing-v3 (Box2D physics + 96×96 pixels) in the same process. Goal ≥ 25×.

    python tests/bench/bench_sim.py
    python -m pytest tests/bench/bench_sim.py -s -p no:cacheprovider -o python_files='bench_*.py'

CarRacing needs Box2D and pygame (the ``bench`` extra: ``pip install 'box2d>=2.3.10' 'pygame>=2.1'``).
Rounds alternate between the two
so that load from elsewhere on the machine hits both alike; medians are compared.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from firmware.sim.expert import ExpertDriver  # noqa: E402
from firmware.sim.render import Randomization  # noqa: E402
from firmware.sim.world import World, WorldConfig  # noqa: E402

ROUNDS = 5
GOAL = 25.0


def _pin_to_one_core() -> str:
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "unpinned (no sched_setaffinity)"


def _reference_track() -> str:
    tracks = Path(os.environ.get("PADDOCK_TRACKS_DIR", ROOT.parent / "shared" / "tracks"))
    path = tracks / "reinvent_base.npy"
    return str(path) if path.is_file() else "technical"


def paddock_rate(track: str, config: WorldConfig, actions: list[tuple[float, float]]) -> float:
    """Steps/s of ``world.step`` + ``world.render`` replaying the expert's actions."""
    world = World(track, config, seed=0)
    start = time.perf_counter()
    for steering, throttle in actions:
        world.step(steering, throttle)
        world.render()
    return len(actions) / (time.perf_counter() - start)


def expert_actions(track: str, config: WorldConfig, n: int) -> list[tuple[float, float]]:
    world = World(track, config, seed=0)
    expert = ExpertDriver(world.track, config.car)
    actions = []
    for _ in range(n):
        action = expert.act(world.car.state)
        world.step(*action)
        actions.append(action)
    return actions


def carracing_rate(n: int) -> float | None:
    """Steps/s of CarRacing-v3 (continuous actions, state pixels), excluding its reset."""
    try:
        import gymnasium as gym

        env = gym.make("CarRacing-v3")
    except Exception as exc:  # Box2D or pygame missing
        print(f"CarRacing-v3 unavailable: {exc}")
        return None
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    actions = [np.array([rng.uniform(-0.3, 0.3), 0.6, 0.0], np.float32) for _ in range(n)]
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:  # not expected within n steps; keep the clock honest anyway
            paused = time.perf_counter()
            env.reset()
            start += time.perf_counter() - paused
    rate = n / (time.perf_counter() - start)
    env.close()
    return rate


def env_rate(track: str, n: int) -> float:
    """Steps/s of the gymnasium DeepRacer env (step + render + 27 params + reward function)."""
    from firmware.sim.gym_env import DeepRacerEnv

    env = DeepRacerEnv(track)
    env.reset(seed=0)
    expert = ExpertDriver(env.world.track, env.world.config.car)
    car = env.world.config.car
    from firmware.sim.physics import steering_to_angle_deg, throttle_to_speed

    start = time.perf_counter()
    for _ in range(n):
        steering, throttle = expert.act(env.world.car.state)
        action = np.array([steering_to_angle_deg(steering, car), min(throttle_to_speed(throttle, car), 2.0)])
        _, _, terminated, truncated, _ = env.step(action.astype(np.float32))
        if terminated or truncated:
            env.reset()
    return n / (time.perf_counter() - start)


def _median(fn: Callable[[], float | None], rounds: int) -> float | None:
    values = [v for v in (fn() for _ in range(rounds)) if v is not None]
    return statistics.median(values) if values else None


def main() -> None:
    where = _pin_to_one_core()
    track = _reference_track()
    config = WorldConfig()  # 1/30 s steps, 2 physics substeps, 160×120 RGB camera
    actions = expert_actions(track, config, 3000)
    randomized = WorldConfig(randomization=Randomization(enabled=True))
    paddock_rate(track, config, actions[:200])  # warm up
    carracing_rate(20)
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(ROUNDS):
        ours.append(paddock_rate(track, config, actions))
        rate = carracing_rate(300)
        if rate is not None:
            theirs.append(rate)
    dr = _median(lambda: paddock_rate(track, randomized, actions[:1500]), 3)
    env = _median(lambda: env_rate(track, 1500), 3)
    print()
    print(f"simulator benchmark on one CPU core ({where}), {ROUNDS} alternating rounds, medians")
    name = Path(track).stem
    print(f"  paddock World.step + render 160x120 RGB ({name}): {statistics.median(ours):8.0f} steps/s")
    print(f"  paddock, domain randomisation on:                          {dr or 0:8.0f} steps/s")
    print(f"  paddock DeepRacerEnv.step (+ params, reward, expert acts): {env or 0:8.0f} steps/s")
    if theirs:
        ref = statistics.median(theirs)
        ratio = statistics.median(ours) / ref
        print(f"  gymnasium CarRacing-v3 step (Box2D + 96x96 pixels):        {ref:8.0f} steps/s")
        verdict = "met" if ratio >= GOAL else "NOT met"
        print(f"  ratio paddock / CarRacing-v3: {ratio:.1f}x (goal >= {GOAL:.0f}x) -> {verdict}")
    else:
        print(
            "  CarRacing-v3 not measured: install box2d and pygame "
            "(the bench extra: pip install 'box2d>=2.3.10' 'pygame>=2.1')"
        )


def test_bench_sim() -> None:
    main()


if __name__ == "__main__":
    main()
