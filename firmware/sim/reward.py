"""DeepRacer reward functions: the ``params`` dict and calling a user's ``reward_function``.

:func:`deepracer_params` builds the 27 keys of the DeepRacer simulator (deepracer-simapp's
``RewardParam``) with its units and quirks:

* ``x``, ``y`` are the car's front reference point (0.14 m ahead of the rear axle by default);
* ``heading`` and ``steering_angle`` are degrees, ``steering_angle`` positive = LEFT;
* ``speed`` and ``steering_angle`` are the *commanded* action, not what the wheels do yet;
* ``progress`` is 0–100 % of a lap from the episode's start (100 on the step a lap completes);
* ``closest_waypoints`` is ``[prev, next]`` around the car's projection on the centre line, and
  ``waypoints`` includes the closing point (first == last);
* ``track_width`` is the distance between the border points nearest to the car's centre-line point;
* ``is_left_of_center`` compares the distances to those inner and outer points (flipped on a
  clockwise track), ``is_reversed`` says the track is driven against its waypoint order;
* ``projection_distance`` is metres along the centre line from waypoint 0, ``sim_time`` seconds;
* the object keys describe the obstacles (empty lists and ``[0, 0]`` when there are none).

:func:`load_reward_function` imports ``reward_function`` from a user's Python file, and
:class:`RewardFunction` calls it as DeepRacer does: on a deep copy of ``params``, insisting on a
finite number within ±1e5. Anything else is a :class:`RewardFunctionError` naming the file.
"""

from __future__ import annotations

import bisect
import importlib.util
import math
import numbers
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from firmware.sim.physics import steering_to_angle_deg
from firmware.sim.world import World

PARAM_KEYS: tuple[str, ...] = (
    "all_wheels_on_track",
    "x",
    "y",
    "heading",
    "distance_from_center",
    "projection_distance",
    "progress",
    "steps",
    "speed",
    "steering_angle",
    "track_width",
    "track_length",
    "waypoints",
    "closest_waypoints",
    "is_left_of_center",
    "is_reversed",
    "closest_objects",
    "objects_location",
    "objects_left_of_center",
    "object_in_camera",
    "objects_speed",
    "objects_heading",
    "objects_distance_from_center",
    "objects_distance",
    "is_crashed",
    "is_offtrack",
    "sim_time",
)

REWARD_LIMIT = 1e5
Params = dict[str, Any]


def deepracer_params(world: World) -> Params:
    """DeepRacer's reward ``params`` for the world as it is now (after the last step)."""
    track = world.track
    status = world.status
    car = world.car
    fx, fy = car.front_point()
    proj = track.project(fx, fy)
    (ix, iy), (ox, oy) = track.border_points(fx, fy)
    closer_to_inner = math.hypot(fx - ix, fy - iy) < math.hypot(fx - ox, fy - oy)
    heading = math.degrees(car.state.yaw)
    params: Params = {
        "all_wheels_on_track": status.all_wheels_on_track,
        "x": fx,
        "y": fy,
        "heading": heading,
        "distance_from_center": proj.distance,
        "projection_distance": proj.s,
        "progress": status.progress,
        "steps": status.steps,
        "speed": world.commanded_speed,
        "steering_angle": steering_to_angle_deg(car.command.steering, world.config.car),
        "track_width": math.hypot(ix - ox, iy - oy),
        "track_length": track.length,
        "waypoints": track.waypoint_list,
        "closest_waypoints": list(track.closest_waypoints(proj.s)),
        "is_left_of_center": closer_to_inner ^ (not track.is_ccw),
        "is_reversed": track.is_reversed,
        "closest_objects": [0, 0],
        "objects_location": [],
        "objects_left_of_center": [],
        "object_in_camera": False,
        "objects_speed": [],
        "objects_heading": [],
        "objects_distance_from_center": [],
        "objects_distance": [],
        "is_crashed": status.crashed,
        "is_offtrack": status.off_track,
        "sim_time": status.time,
    }
    obstacles = world.config.obstacles
    if obstacles:
        projections = [track.project(o.x, o.y) for o in obstacles]
        pdists = [p.s for p in projections]
        order = sorted(range(len(obstacles)), key=lambda k: pdists[k])
        ordered = [pdists[k] for k in order]
        nxt = bisect.bisect_right(ordered, proj.s)
        prev = nxt - 1
        if prev == -1:
            prev = len(ordered) - 1
        if nxt == len(ordered):
            nxt = 0
        prev_i, next_i = order[prev], order[nxt]
        s = car.state
        params.update(
            closest_objects=[prev_i, next_i],
            objects_location=[[o.x, o.y] for o in obstacles],
            objects_left_of_center=[(p.lateral > 0) for p in projections],
            object_in_camera=world.renderer.object_in_view(
                s.x, s.y, s.yaw, obstacles[next_i].x, obstacles[next_i].y
            ),
            objects_speed=[0.0] * len(obstacles),
            objects_heading=[0.0] * len(obstacles),
            objects_distance_from_center=[p.distance for p in projections],
            objects_distance=pdists,
        )
    return params


def copy_params(params: Params) -> Params:
    """A deep copy of ``params`` (what :func:`copy.deepcopy` gives), fast for its known shapes:
    lists are copied, nested lists copied, tuples and scalars are immutable and shared."""
    out: Params = {}
    for key, value in params.items():
        if isinstance(value, list):
            out[key] = [list(v) if isinstance(v, list) else v for v in value]
        else:
            out[key] = value
    return out


class RewardFunctionError(RuntimeError):
    """A reward function that cannot be loaded or misbehaved; the message names its file."""


class RewardFunction:
    """Calls a DeepRacer-style ``reward_function(params) -> float`` safely.

    ``timeout_s`` bounds one call: in the main thread an interval timer interrupts it, elsewhere a
    trace hook stops a runaway Python loop; either way a slow call is an error.
    """

    def __init__(self, function: Callable[[Params], Any], source: str, timeout_s: float = 1.0) -> None:
        if not callable(function):
            raise RewardFunctionError(f"{source}: reward_function is not callable")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        self.function = function
        self.source = source
        self.timeout_s = timeout_s

    def __call__(self, params: Params) -> float:
        copied = copy_params(params)
        start = time.perf_counter()
        try:
            result = _call_with_deadline(self.function, copied, self.timeout_s)
        except _Timeout:
            raise RewardFunctionError(
                f"{self.source}: reward_function ran longer than {self.timeout_s:g} s"
            ) from None
        except Exception as exc:
            raise RewardFunctionError(
                f"{self.source}: reward_function raised {type(exc).__name__}: {exc}"
            ) from exc
        elapsed = time.perf_counter() - start
        if elapsed > self.timeout_s:
            raise RewardFunctionError(
                f"{self.source}: reward_function took {elapsed:.2f} s (limit {self.timeout_s:g} s)"
            )
        if isinstance(result, str | bytes) or not isinstance(result, numbers.Real):
            raise RewardFunctionError(
                f"{self.source}: reward_function must return a number, "
                f"got {type(result).__name__} {result!r:.60}"
            )
        reward = float(result)
        if not math.isfinite(reward):
            raise RewardFunctionError(f"{self.source}: reward_function returned {reward}")
        if not -REWARD_LIMIT <= reward <= REWARD_LIMIT:
            raise RewardFunctionError(f"{self.source}: reward {reward:g} is out of range [-1e5, 1e5]")
        return reward


def load_reward_function(path: str | Path, timeout_s: float = 1.0) -> RewardFunction:
    """Import ``reward_function`` from a Python file, as DeepRacer does (module state persists)."""
    p = Path(path)
    source = str(p)
    if not p.is_file():
        raise RewardFunctionError(f"{source}: no such reward function file")
    module_name = f"_paddock_reward_{abs(hash(p.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, p)
    if spec is None or spec.loader is None:
        raise RewardFunctionError(f"{source}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise RewardFunctionError(f"{source}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        raise RewardFunctionError(f"{source}: importing it raised {type(exc).__name__}: {exc}") from exc
    function = getattr(module, "reward_function", None)
    if function is None:
        raise RewardFunctionError(f"{source}: defines no reward_function(params)")
    sys.modules.setdefault(module_name, module)
    return RewardFunction(function, source, timeout_s)


def follow_center_line(params: Params) -> float:
    """DeepRacer's first example: reward staying near the centre line."""
    track_width = params["track_width"]
    distance_from_center = params["distance_from_center"]
    if distance_from_center <= 0.1 * track_width:
        reward = 1.0
    elif distance_from_center <= 0.25 * track_width:
        reward = 0.5
    elif distance_from_center <= 0.5 * track_width:
        reward = 0.1
    else:
        reward = 1e-3
    return reward


DEFAULT_REWARD = RewardFunction(follow_center_line, "built-in follow_center_line")


class _Timeout(BaseException):
    """Raised inside a reward function that overran (a BaseException, so ``except Exception`` in
    the user's code does not swallow it)."""


def _call_with_deadline(function: Callable[[Params], Any], params: Params, timeout_s: float) -> Any:
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):

        def on_alarm(signum: int, frame: FrameType | None) -> None:
            raise _Timeout

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            return function(params)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    deadline = time.perf_counter() + timeout_s

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        if time.perf_counter() > deadline:
            raise _Timeout
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        return function(params)
    finally:
        sys.settrace(old)
