"""The gymnasium environment: registration, check_env, DeepRacer action spaces and terminations."""

import json
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from firmware.sim.expert import ExpertDriver
from firmware.sim.gym_env import ENV_ID, DeepRacerEnv, ModelMetadataError, load_model_metadata
from firmware.sim.physics import steering_to_angle_deg, throttle_to_speed

DISCRETE = {
    "action_space_type": "discrete",
    "action_space": [
        {"steering_angle": 30.0, "speed": 1.0, "index": 0},
        {"steering_angle": 0.0, "speed": 2.0, "index": 1},
        {"steering_angle": -30.0, "speed": 1.0, "index": 2},
    ],
    "sensor": ["FRONT_FACING_CAMERA", "SECTOR_LIDAR"],
    "neural_network": "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW",
    "version": "5",
}


def _check(env: gym.Env) -> None:  # type: ignore[type-arg]
    with warnings.catch_warnings():
        # DeepRacer's continuous ranges are degrees and m/s, not the normalised [-1, 1] SB3 prefers.
        warnings.filterwarnings("ignore", message=".*symmetric and normalized.*")
        check_env(env)


def test_registered_id_and_check_env_continuous_camera() -> None:
    env = gym.make(ENV_ID, track="oval")
    assert isinstance(env.unwrapped, DeepRacerEnv)
    _check(env.unwrapped)
    assert env.observation_space.shape == (120, 160, 3)
    assert env.action_space.low.tolist() == [-30.0, 0.5]
    env.close()


def test_check_env_discrete_with_lidar_from_a_metadata_file(tmp_path: Path) -> None:
    path = tmp_path / "model_metadata.json"
    path.write_text(json.dumps(DISCRETE))
    env = gym.make(ENV_ID, track="technical", model_metadata=path).unwrapped
    assert isinstance(env, DeepRacerEnv)
    _check(env)
    assert env.action_space == gym.spaces.Discrete(3)
    obs, info = env.reset(seed=3)
    assert set(obs) == {"camera", "lidar"} and obs["lidar"].shape == (64,)
    assert set(info["params"]) >= {"progress", "waypoints"}
    # Action 0 is DeepRacer's +30°: full LEFT, which is steering -1 here.
    env.step(0)
    car = env.world.car
    assert car.command.steering == pytest.approx(-1.0)
    assert steering_to_angle_deg(car.command.steering, env.world.config.car) == pytest.approx(30.0)
    assert throttle_to_speed(car.command.throttle, env.world.config.car) == pytest.approx(1.0)


def test_bad_model_metadata_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "meta.json"
    bad.write_text('{"action_space": [{"steering_angle": "left"}]}')
    with pytest.raises(ModelMetadataError, match=r"meta\.json: action 0 needs a numeric steering_angle"):
        load_model_metadata(bad)
    bad.write_text("{not json")
    with pytest.raises(ModelMetadataError, match="not JSON"):
        load_model_metadata(bad)
    with pytest.raises(ModelMetadataError, match="unknown action_space_type"):
        load_model_metadata({"action_space_type": "hybrid", "action_space": []})


def test_off_track_terminates() -> None:
    env = DeepRacerEnv("oval")
    env.reset(seed=0)
    for _ in range(300):
        _, _, terminated, truncated, info = env.step(np.array([-30.0, 2.0], np.float32))  # hard right
        if terminated:
            break
    assert terminated and not truncated
    assert info["episode_status"] == "off_track"
    assert info["params"]["is_offtrack"] is True


def test_a_lap_completes_an_episode_and_rewards_follow_the_user_function(tmp_path: Path) -> None:
    rf = tmp_path / "reward.py"
    rf.write_text("def reward_function(params):\n    return params['progress'] / 100.0\n")
    env = DeepRacerEnv("oval", reward_function=rf)
    env.reset(seed=0)
    expert = ExpertDriver(env.world.track, env.world.config.car)
    car = env.world.config.car
    rewards = []
    for _ in range(1000):
        steering, throttle = expert.act(env.world.car.state)
        action = np.array(
            [steering_to_angle_deg(steering, car), min(throttle_to_speed(throttle, car), 2.0)], np.float32
        )
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and info["episode_status"] == "lap_complete"
    assert info["lap_time"] is not None and 8 < info["lap_time"] < 30
    assert rewards[-1] == pytest.approx(1.0)
    assert rewards[len(rewards) // 2] == pytest.approx(0.5, abs=0.1)


def test_step_limit_truncates_and_render_returns_the_frame() -> None:
    env = DeepRacerEnv("s-curve", max_steps=5, render_mode="rgb_array")
    env.reset(seed=1)
    for _ in range(5):
        _, _, terminated, truncated, info = env.step(np.array([0.0, 0.5], np.float32))
        assert not terminated
    assert truncated and info["episode_status"] == "time_up"
    frame = env.render()
    assert frame is not None and frame.shape == (120, 160, 3)


def test_same_seed_same_observations() -> None:
    from firmware.sim.render import Randomization
    from firmware.sim.world import WorldConfig

    config = WorldConfig(dt=1 / 15, substeps=4, randomization=Randomization(enabled=True))
    a, b = DeepRacerEnv("technical", world_config=config), DeepRacerEnv("technical", world_config=config)
    oa, _ = a.reset(seed=11)
    ob, _ = b.reset(seed=11)
    assert np.array_equal(oa, ob)
    for _ in range(5):
        oa = a.step(np.array([5.0, 1.0], np.float32))[0]
        ob = b.step(np.array([5.0, 1.0], np.float32))[0]
    assert np.array_equal(oa, ob)
    oc, _ = b.reset(seed=12)
    assert not np.array_equal(a.reset(seed=11)[0], oc)
