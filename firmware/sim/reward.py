"""DeepRacer reward functions: the ``params`` dict and calling a user's ``reward_function``.

:func:`deepracer_params` (in :mod:`firmware.sim.world`, which owns the state it reads; imported
here for reward users) builds the 27 keys of the DeepRacer simulator (deepracer-simapp's
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

# The world computes the params; reward users import them from here too.
from firmware.sim.world import PARAM_KEYS as PARAM_KEYS
from firmware.sim.world import Params as Params
from firmware.sim.world import deepracer_params as deepracer_params

REWARD_LIMIT = 1e5


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
