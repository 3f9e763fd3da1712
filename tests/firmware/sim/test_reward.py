"""DeepRacer reward params (27 keys, units, quirks) and loading/calling users' reward functions."""

import math
import textwrap
import threading
from pathlib import Path

import pytest

from firmware.sim.expert import ExpertDriver
from firmware.sim.obstacles import place_obstacles
from firmware.sim.reward import (
    PARAM_KEYS,
    RewardFunction,
    RewardFunctionError,
    copy_params,
    deepracer_params,
    load_reward_function,
)
from firmware.sim.track import Track
from firmware.sim.world import World, WorldConfig

# A reward function written for AWS DeepRacer, kept exactly as a DeepRacer user would write it.
FOLLOW_CENTER_LINE = '''
import math


def reward_function(params):
    """Stay near the centre line, all wheels on the track, pointing along the track."""
    if not params["all_wheels_on_track"] or params["is_offtrack"]:
        return 1e-3

    track_width = params["track_width"]
    distance_from_center = params["distance_from_center"]
    band_1 = 0.1 * track_width
    band_2 = 0.25 * track_width
    band_3 = 0.5 * track_width
    if distance_from_center <= band_1:
        reward = 1.0
    elif distance_from_center <= band_2:
        reward = 0.5
    elif distance_from_center <= band_3:
        reward = 0.1
    else:
        reward = 1e-3

    waypoints = params["waypoints"]
    prev_point = waypoints[params["closest_waypoints"][0]]
    next_point = waypoints[params["closest_waypoints"][1]]
    track_direction = math.degrees(math.atan2(next_point[1] - prev_point[1], next_point[0] - prev_point[0]))
    direction_diff = abs(track_direction - params["heading"])
    if direction_diff > 180:
        direction_diff = 360 - direction_diff
    if direction_diff > 10.0:
        reward *= 0.5

    if abs(params["steering_angle"]) > 20.0:
        reward *= 0.8
    return float(reward)
'''


def _write(tmp_path: Path, source: str, name: str = "reward.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_params_have_exactly_deepracers_27_keys_and_types() -> None:
    world = World("oval")
    world.step(-0.5, 0.3)
    params = deepracer_params(world)
    assert len(PARAM_KEYS) == 27 == len(set(PARAM_KEYS))
    assert set(params) == set(PARAM_KEYS)
    assert world.params() == params
    for key in ("all_wheels_on_track", "is_left_of_center", "is_reversed", "is_crashed", "is_offtrack"):
        assert isinstance(params[key], bool), key
    for key in ("x", "y", "heading", "distance_from_center", "projection_distance", "progress", "speed"):
        assert isinstance(params[key], float), key
    assert isinstance(params["steps"], int) and params["steps"] == 1
    assert isinstance(params["waypoints"], list) and isinstance(params["waypoints"][0], tuple)
    assert params["waypoints"][0] == params["waypoints"][-1]  # the closing point is included
    assert params["closest_objects"] == [0, 0] and params["objects_location"] == []
    assert params["object_in_camera"] is False
    assert params["sim_time"] == pytest.approx(world.dt)


def test_params_against_hand_values_on_the_rectangle(rectangle: Track) -> None:
    world = World(rectangle)
    # Front point 0.2 m left of the centre line, 3 m along the bottom side, heading +x + 10°.
    world.reset(start_progress=25.0, lateral=0.2, yaw_offset=math.radians(10))
    world.car.set_command(-0.5, 0.5)  # half left, half throttle
    p = deepracer_params(world)
    assert (p["x"], p["y"]) == pytest.approx((3.0, 0.2))
    assert p["heading"] == pytest.approx(10.0)
    assert p["distance_from_center"] == pytest.approx(0.2)
    assert p["projection_distance"] == pytest.approx(3.0)
    assert p["closest_waypoints"] == [1, 2]
    assert p["is_left_of_center"] is True
    assert p["track_width"] == pytest.approx(1.0)
    assert p["track_length"] == pytest.approx(12.0)
    assert p["steering_angle"] == pytest.approx(15.0)  # DeepRacer: positive = left
    assert p["speed"] == pytest.approx(0.1 + 0.5 * 3.9)  # the commanded speed
    assert p["progress"] == pytest.approx(0.0)
    assert p["all_wheels_on_track"] and not p["is_offtrack"]
    world.reset(start_progress=25.0, lateral=-0.3)
    assert deepracer_params(world)["is_left_of_center"] is False


def test_left_of_center_flips_with_direction_and_is_reversed_flag(rectangle: Track) -> None:
    back = World(rectangle.reversed())
    back.reset(start_progress=50.0, lateral=0.2)  # left of the (clockwise) driving direction
    p = deepracer_params(back)
    assert p["is_reversed"] is True
    assert p["is_left_of_center"] is True


def test_object_params() -> None:
    track = World("oval").track
    boxes = place_obstacles(track, [20.0, 60.0], ["inner", "outer"])
    world = World(track, WorldConfig(obstacles=boxes))
    p = deepracer_params(world)
    assert p["closest_objects"] == [1, 0]  # behind the car: box 1 (60 %), ahead: box 0 (20 %)
    assert p["objects_location"] == [[b.x, b.y] for b in boxes]
    assert p["objects_left_of_center"] == [True, False]  # inner is left on a CCW track
    assert p["objects_distance"] == pytest.approx([0.2 * track.length, 0.6 * track.length], abs=1e-6)
    assert p["objects_distance_from_center"] == pytest.approx([0.2, 0.2], abs=1e-3)  # chords of a bend
    assert p["objects_speed"] == [0.0, 0.0] and p["objects_heading"] == [0.0, 0.0]
    assert p["object_in_camera"] is True


def test_a_deepracer_reward_function_runs_unchanged(tmp_path: Path) -> None:
    reward = load_reward_function(_write(tmp_path, FOLLOW_CENTER_LINE))
    world = World("s-curve")
    expert = ExpertDriver(world.track, world.config.car)
    total, steps = 0.0, 0
    while world.status.lap < 1:
        world.step(*expert.act(world.car.state))
        total += reward(deepracer_params(world))
        steps += 1
    assert total / steps > 0.7  # the expert hugs the centre line
    world.reset(lateral=0.35)
    assert reward(deepracer_params(world)) == pytest.approx(0.1)


def test_params_are_deep_copied_for_each_call(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        def reward_function(params):
            params["waypoints"].clear()
            params["closest_waypoints"][0] = -1
            return 1.0
        """,
    )
    reward = load_reward_function(path)
    params = deepracer_params(World("oval"))
    reward(params)
    assert len(params["waypoints"]) > 10 and params["closest_waypoints"][0] >= 0
    nested = {"objects_location": [[1.0, 2.0]]}
    copied = copy_params(nested)
    copied["objects_location"][0][0] = 9.0
    assert nested["objects_location"][0][0] == 1.0


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def reward_function(params):\n    return params['nope']\n", "raised KeyError"),
        ("def reward_function(params):\n    return 'high'\n", "must return a number"),
        ("def reward_function(params):\n    return None\n", "must return a number"),
        ("def reward_function(params):\n    return float('nan')\n", "returned nan"),
        ("def reward_function(params):\n    return float('inf')\n", "returned inf"),
        ("def reward_function(params):\n    return 2e5\n", "out of range"),
        ("def reward_function(params):\n    while True:\n        pass\n", "ran longer than"),
    ],
)
def test_misbehaving_reward_functions_are_clear_errors(tmp_path: Path, source: str, message: str) -> None:
    path = _write(tmp_path, source)
    reward = load_reward_function(path, timeout_s=0.2)
    with pytest.raises(RewardFunctionError, match=message) as info:
        reward(deepracer_params(World("oval")))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def reward(params):\n    return 1.0\n", "defines no reward_function"),
        ("def reward_function(params)\n    return 1.0\n", "syntax error"),
        ("import not_a_module_anywhere\n", "importing it raised ModuleNotFoundError"),
        ("reward_function = 3\n", "not callable"),
    ],
)
def test_unloadable_reward_files(tmp_path: Path, source: str, message: str) -> None:
    path = _write(tmp_path, source)
    with pytest.raises(RewardFunctionError, match=message) as info:
        load_reward_function(path)
    assert str(path) in str(info.value)
    with pytest.raises(RewardFunctionError, match="no such reward function file"):
        load_reward_function(tmp_path / "missing.py")


def test_timeout_also_works_off_the_main_thread(tmp_path: Path) -> None:
    reward = load_reward_function(
        _write(tmp_path, "def reward_function(params):\n    while True:\n        pass\n"), timeout_s=0.2
    )
    errors: list[BaseException] = []

    def call() -> None:
        try:
            reward({"x": 1.0})
        except RewardFunctionError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert errors and "ran longer than" in str(errors[0])


def test_module_state_persists_between_calls_as_in_deepracer(tmp_path: Path) -> None:
    source = """
        calls = 0

        def reward_function(params):
            global calls
            calls += 1
            return float(calls)
        """
    reward = load_reward_function(_write(tmp_path, source))
    assert [reward({}) for _ in range(3)] == [1.0, 2.0, 3.0]
    assert RewardFunction(lambda p: 1, "inline")({}) == 1.0
