"""A gymnasium environment over the simulator, shaped like AWS DeepRacer's.

    import gymnasium as gym
    import firmware.sim.gym_env  # registers the id
    env = gym.make("paddock/DeepRacer-v0", track="oval", model_metadata="model_metadata.json",
                   reward_function="reward.py")

* **actions** come from a DeepRacer ``model_metadata.json``: a discrete list of
  ``{"steering_angle": deg, "speed": m/s}`` (``Discrete(n)``) or continuous ranges
  (``Box([steer_low, speed_low], [steer_high, speed_high])``, degrees and m/s). Steering is
  DeepRacer's: positive = LEFT, clipped to the car's ±30°; speed is clipped to 0.1–4.0 m/s.
* **observations** are the camera image (``(120, 160, 3)`` uint8, or ``(120, 160, 1)`` grayscale);
  with a ``LIDAR``/``SECTOR_LIDAR`` sensor in the metadata, a dict ``{"camera", "lidar"}``.
* **reward** is the reward function's value for DeepRacer's ``params`` after the step
  (DeepRacer's follow-the-centre-line example by default).
* **termination** as DeepRacer: off track, reversed, crashed, lap complete; **truncation** at
  ``max_steps``. ``info`` carries ``episode_status``, ``progress``, ``lap_time`` and ``params``.

The step rate is DeepRacer's 15 Hz by default (``WorldConfig.dt``).

Matched to deepracer-simapp (``markov/agent_ctrl/rollout_agent_ctrl.py`` and ``constants.py``):

* ``x``, ``y`` are DeepRacer's point, ``RELATIVE_POSITION_OF_FRONT_OF_CAR`` (0.14 m) ahead of its
  car model's origin, which its URDF puts 0.081663 m ahead of the rear axle
  (:data:`DEEPRACER_VEHICLE`'s ``front_offset`` 0.221663 m); an episode starts with that origin on
  the start line, so the point starts 0.14 m past it (``start_offset``) and ``progress`` starts
  above 0, as DeepRacer's does;
* ``sim_time`` is the simulator's clock, which DeepRacer never resets between episodes: here the
  simulated seconds since the environment was made (or last reset with a seed, unless the reset's
  options say ``keep_clock``), across its episodes;
* ``steering_angle`` and ``speed`` are the action's own values (the discrete action's entry,
  the continuous action as given), though the car is driven with them clipped to ±30° and
  0.1–4 m/s (``MAX_ANGLE``, ``MIN_SPEED``, ``MAX_SPEED``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from firmware.sim.physics import VehicleSpec, angle_deg_to_steering, speed_to_throttle
from firmware.sim.reward import DEFAULT_REWARD, Params, RewardFunction, deepracer_params, load_reward_function
from firmware.sim.track import Track
from firmware.sim.world import World, WorldConfig

ENV_ID = "paddock/DeepRacer-v0"
DEEPRACER_DT = 1.0 / 15.0
DEEPRACER_ORIGIN_AHEAD_OF_REAR_AXLE = 0.081663  # m: the rear wheel joints at x = -0.081663 (URDF)
DEEPRACER_POINT_AHEAD_OF_ORIGIN = 0.14  # m: RELATIVE_POSITION_OF_FRONT_OF_CAR
DEEPRACER_VEHICLE = VehicleSpec(
    front_offset=DEEPRACER_ORIGIN_AHEAD_OF_REAR_AXLE + DEEPRACER_POINT_AHEAD_OF_ORIGIN
)
LIDAR_SENSORS = ("LIDAR", "SECTOR_LIDAR", "DISCRETIZED_SECTOR_LIDAR")

DEFAULT_MODEL_METADATA: dict[str, Any] = {
    "action_space_type": "continuous",
    "action_space": {"steering_angle": {"low": -30.0, "high": 30.0}, "speed": {"low": 0.5, "high": 2.0}},
    "sensor": ["FRONT_FACING_CAMERA"],
    "neural_network": "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW",
    "version": "5",
}


class ModelMetadataError(ValueError):
    """A ``model_metadata.json`` that cannot define an action space; names the file."""


def load_model_metadata(source: str | Path | dict[str, Any] | None) -> dict[str, Any]:
    """Read and check a DeepRacer model metadata file (or dict). ``None`` gives the default."""
    if source is None:
        return dict(DEFAULT_MODEL_METADATA)
    name = "model metadata"
    if isinstance(source, dict):
        data = source
    else:
        name = str(source)
        try:
            data = json.loads(Path(source).read_text())
        except OSError as exc:
            raise ModelMetadataError(f"{name}: cannot be read ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise ModelMetadataError(f"{name}: not JSON ({exc})") from None
    if not isinstance(data, dict) or "action_space" not in data:
        raise ModelMetadataError(f"{name}: no action_space")
    kind = str(data.get("action_space_type", "discrete")).lower().strip()
    space = data["action_space"]
    if kind == "discrete":
        if not isinstance(space, list) or not space:
            raise ModelMetadataError(f"{name}: a discrete action_space must be a non-empty list")
        for i, action in enumerate(space):
            if not isinstance(action, dict):
                raise ModelMetadataError(f"{name}: action {i} is not an object")
            for key in ("steering_angle", "speed"):
                if not isinstance(action.get(key), int | float) or not np.isfinite(action[key]):
                    raise ModelMetadataError(f"{name}: action {i} needs a numeric {key}")
    elif kind == "continuous":
        if not isinstance(space, dict):
            raise ModelMetadataError(f"{name}: a continuous action_space must be an object")
        for key in ("steering_angle", "speed"):
            rng = space.get(key)
            if not (
                isinstance(rng, dict)
                and isinstance(rng.get("low"), int | float)
                and isinstance(rng.get("high"), int | float)
            ):
                raise ModelMetadataError(f"{name}: continuous {key} needs numeric low and high")
            if not rng["low"] <= rng["high"]:
                raise ModelMetadataError(f"{name}: {key} low must not exceed high")
    else:
        raise ModelMetadataError(f"{name}: unknown action_space_type {kind!r}")
    sensors = data.get("sensor", ["FRONT_FACING_CAMERA"])
    if not isinstance(sensors, list):
        raise ModelMetadataError(f"{name}: sensor must be a list")
    return {**data, "action_space_type": kind, "sensor": sensors}


class DeepRacerEnv(gym.Env[Any, Any]):
    """DeepRacer-style episodes on a paddock track (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}  # noqa: RUF012 (gymnasium's API)

    def __init__(
        self,
        track: str | Path | Track = "oval",
        model_metadata: str | Path | dict[str, Any] | None = None,
        reward_function: str | Path | Callable[[Params], Any] | RewardFunction | None = None,
        world_config: WorldConfig | None = None,
        max_steps: int = 10_000,
        random_start: bool = False,
        render_mode: str | None = None,
        start_offset: float = DEEPRACER_POINT_AHEAD_OF_ORIGIN,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        self.render_mode = render_mode
        self.max_steps = max_steps
        self.random_start = random_start
        self.start_offset = start_offset
        self._clock_base = 0.0  # simulated seconds of the episodes before this one
        self._action_values: tuple[float, float] | None = None
        self.model_metadata = load_model_metadata(model_metadata)
        if reward_function is None:
            self.reward_function = DEFAULT_REWARD
        elif isinstance(reward_function, RewardFunction):
            self.reward_function = reward_function
        elif isinstance(reward_function, str | Path):
            self.reward_function = load_reward_function(reward_function)
        else:
            self.reward_function = RewardFunction(
                reward_function, getattr(reward_function, "__name__", "reward_function")
            )
        config = world_config or WorldConfig(dt=DEEPRACER_DT, substeps=4, car=DEEPRACER_VEHICLE)
        self.use_lidar = any(s in LIDAR_SENSORS for s in self.model_metadata["sensor"])
        self.world = World(track, config)
        car = config.car
        if self.model_metadata["action_space_type"] == "discrete":
            actions = self.model_metadata["action_space"]
            self._discrete = [
                (angle_deg_to_steering(a["steering_angle"], car), speed_to_throttle(a["speed"], car))
                for a in actions
            ]
            self.action_space: spaces.Space[Any] = spaces.Discrete(len(actions))
        else:
            rng = self.model_metadata["action_space"]
            self._discrete = []
            self.action_space = spaces.Box(
                low=np.array([rng["steering_angle"]["low"], rng["speed"]["low"]], dtype=np.float32),
                high=np.array([rng["steering_angle"]["high"], rng["speed"]["high"]], dtype=np.float32),
                dtype=np.float32,
            )
        cam = config.camera
        camera_space = spaces.Box(0, 255, (cam.height, cam.width, cam.channels), np.uint8)
        if self.use_lidar:
            lid = config.lidar
            self.observation_space: spaces.Space[Any] = spaces.Dict(
                {
                    "camera": camera_space,
                    "lidar": spaces.Box(lid.min_range, lid.max_range, (lid.beams,), np.float32),
                }
            )
        else:
            self.observation_space = camera_space
        self._last_frame: NDArray[np.uint8] | None = None

    def _observe(self) -> Any:
        frame = self.world.render()
        self._last_frame = frame
        if self.use_lidar:
            return {"camera": frame, "lidar": self.world.lidar()}
        return frame

    def _to_command(self, action: Any) -> tuple[float, float]:
        car = self.world.config.car
        if self._discrete:
            entry = self.model_metadata["action_space"][int(action)]
            self._action_values = (float(entry["steering_angle"]), float(entry["speed"]))
            return self._discrete[int(action)]
        steering_deg, speed = (float(v) for v in np.asarray(action, dtype=np.float64).reshape(2))
        self._action_values = (steering_deg, speed)
        return angle_deg_to_steering(steering_deg, car), speed_to_throttle(speed, car)

    def params(self) -> Params:
        """DeepRacer's ``params`` now: the world's, with DeepRacer's clock and action values."""
        params = deepracer_params(self.world)
        params["sim_time"] = self._clock_base + params["sim_time"]
        if self._action_values is not None:
            params["steering_angle"], params["speed"] = self._action_values
        return params

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        start = options.get("start_progress")
        if start is None:
            start = float(self.np_random.uniform(0, 100)) if self.random_start else 0.0
        lateral = float(options.get("start_lateral", 0.0))
        # DeepRacer's clock runs on across episodes; a seeded reset is a fresh simulator (so that
        # the same seed gives the same episode) unless ``keep_clock`` says otherwise.
        restart = seed is not None and not options.get("keep_clock", False)
        self._clock_base = 0.0 if restart else self._clock_base + self.world.time
        self._action_values = None
        # The world's randomness (domain randomisation, noise) follows the environment's seed.
        self.world.reset(
            int(self.np_random.integers(2**31)),
            start_progress=float(start),
            lateral=lateral,
            line_offset=self.start_offset,
        )
        obs = self._observe()
        params = self.params()
        return obs, {"episode_status": "prepare", "progress": params["progress"], "params": params}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        steering, throttle = self._to_command(action)
        status = self.world.step(steering, throttle)
        params = self.params()
        reward = self.reward_function(params)
        if status.lap_completed:
            episode_status = "lap_complete"
        elif status.crashed:
            episode_status = "crashed"
        elif status.off_track:
            episode_status = "off_track"
        elif status.reversed:
            episode_status = "reversed"
        else:
            episode_status = "in_progress"
        terminated = episode_status != "in_progress"
        truncated = not terminated and status.steps >= self.max_steps
        if truncated:
            episode_status = "time_up"
        obs = self._observe()
        info = {
            "episode_status": episode_status,
            "progress": status.progress,
            "lap_time": status.last_lap_time if status.lap_completed else None,
            "params": params,
        }
        return obs, reward, terminated, truncated, info

    def render(self) -> NDArray[np.uint8] | None:
        if self.render_mode != "rgb_array":
            return None
        if self._last_frame is None:
            self._last_frame = self.world.render()
        frame = self._last_frame
        return np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame


def register() -> None:
    """Register :data:`ENV_ID` with gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="firmware.sim.gym_env:DeepRacerEnv", max_episode_steps=None)


register()
