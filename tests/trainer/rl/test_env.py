"""The training environment: DeepRacer's episode rules, observations and reward-function errors."""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from schemas.model_card import InputSpec, preprocess
from trainer.rl.env import IMMOBILE_STEPS, EnvSettings, TrainingEnv, to_observation_frame
from trainer.rl.files import default_metadata

DISCRETE = default_metadata("discrete")
STRAIGHT_SLOW = 4  # (0°, 0.5 m/s)


def _env(tmp_path: Path | None = None, reward: str | None = None, **kw: object) -> TrainingEnv:
    path = None
    if reward is not None:
        assert tmp_path is not None
        path = tmp_path / "reward_function.py"
        path.write_text(reward)
    settings = EnvSettings(
        track="oval", metadata=kw.pop("metadata", DISCRETE), reward_path=str(path) if path else None, **kw
    )  # type: ignore[arg-type]
    return TrainingEnv(settings)


def test_observation_is_the_cards_gray_frame_stacked() -> None:
    env = _env(stack_size=3)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (3, 60, 80) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    obs2, *_ = env.step(STRAIGHT_SLOW)
    assert np.array_equal(obs2[:2], obs[1:])  # the oldest frame dropped, the newest appended
    rgb = env.inner.world.render()
    spec = InputSpec(width=80, height=60, colour="gray")
    frame = to_observation_frame(rgb, 80, 60)
    np.testing.assert_allclose(frame[None] / 255.0, preprocess(rgb, spec), atol=1e-6)


def test_start_positions_rotate_round_the_track() -> None:
    env = _env(start_stride=0.05)
    starts = []
    for _ in range(3):
        env.reset()
        starts.append(env.inner.world.status.s / env.inner.world.track.length)
    gaps = [(b - a) % 1.0 for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([0.05, 0.05], abs=0.01)
    other = TrainingEnv(EnvSettings(track="oval", metadata=DISCRETE), worker=1, workers=2)
    other.reset()
    assert (other.inner.world.status.s / other.inner.world.track.length - starts[0]) % 1.0 == pytest.approx(
        0.5, abs=0.01
    )


def test_off_track_ends_the_episode_with_a_summary() -> None:
    env = _env()
    env.reset(seed=0)
    for _ in range(500):
        _, _, terminated, truncated, info = env.step(0)  # hard left
        if terminated or truncated:
            break
    assert info["episode_status"] == "off_track"
    summary = info["episode_summary"]
    assert summary["status"] == "off_track" and 0 < summary["progress"] < 100 and summary["steps"] > 0


def test_a_stopped_car_is_immobilized() -> None:
    meta = default_metadata("continuous")
    env = _env(metadata=meta)
    env.reset(seed=0)
    steps = 0
    while steps < 100:
        steps += 1
        _, _, terminated, _, info = env.step(np.array([0.0, 0.0], np.float32))  # speed 0: brake
        if terminated:
            break
    assert info["episode_status"] == "immobilized" and steps == IMMOBILE_STEPS


def test_truncated_at_max_steps() -> None:
    env = _env(max_steps=5)
    env.reset(seed=0)
    out = [env.step(STRAIGHT_SLOW) for _ in range(5)]
    assert out[-1][3] and out[-1][4]["episode_summary"]["status"] == "time_up"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "    if params['steps'] > 2:\n        raise KeyError('no_such_key')\n    return 1.0\n",
            "raised KeyError",
        ),
        ("    return float('nan') if params['steps'] > 2 else 1.0\n", "returned nan"),
        ("    return 1e9 if params['steps'] > 2 else 1.0\n", "out of range"),
    ],
)
def test_reward_function_errors_carry_traceback_and_params(tmp_path: Path, body: str, message: str) -> None:
    env = _env(tmp_path, "def reward_function(params):\n" + body)
    env.reset(seed=0)
    for _ in range(3):
        _, reward, terminated, _, info = env.step(STRAIGHT_SLOW)
    assert terminated and reward == 0.0
    error = info["reward_error"]
    assert message in error["message"] and "reward_function.py" in error["message"]
    assert error["params"]["steps"] == 3 and math.isfinite(error["params"]["x"])
    if "KeyError" in message:
        assert "reward_function.py" in error["traceback"] and "raise KeyError" in error["traceback"]


def test_object_avoidance_places_boxes_each_episode() -> None:
    env = _env(race_type="object_avoidance", obstacles=2)
    env.reset(seed=0)
    first = env.inner.world.config.obstacles
    _, info = env.reset()
    second = env.inner.world.config.obstacles
    assert len(first) == len(second) == 2 and first != second
    assert len(info["params"]["objects_location"]) == 2


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="race_type"):
        EnvSettings(track="oval", metadata=DISCRETE, race_type="drag")
