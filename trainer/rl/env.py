"""The training environment: DeepRacer's episode rules and observations over
:class:`firmware.sim.gym_env.DeepRacerEnv`, and its vectorisation over processes.

* **start positions** rotate round the track: episode ``k`` of worker ``i`` of ``n`` starts at
  ``(i / n + k · start_stride) · 100`` % (DeepRacer's round-robin start, 5 % a step by default);
* **termination** as DeepRacer's training: off track, crashed, reversed, immobilised (slower than
  :data:`IMMOBILE_SPEED` for :data:`IMMOBILE_STEPS` steps), lap complete; truncation at ``max_steps``;
* **observations** are the camera image made grayscale and resized (area interpolation, exactly
  what the car does with the exported model's card) to ``height × width``, the last
  ``stack_size`` frames stacked channel-first ``(stack, H, W)`` uint8; with a lidar sensor a dict
  ``{"camera": that, "lidar": (stack · beams,) float32}``;
* **race types**: ``time_trial``; ``object_avoidance`` (``obstacles`` boxes placed at random
  progress and lanes each episode, DeepRacer's object params filled by the simulator);
  ``head_to_head`` (``bot_cars`` bots driving DeepRacer's lanes at ``bot_speed``, changing lanes
  with ``lane_change``, see :mod:`firmware.sim.bots`; an episode starting within 1 m of a bot
  starts in the other lane, as DeepRacer's training does);
* a reward function that raises or returns a bad value ends the episode with
  ``info["reward_error"]`` (message, traceback, the step's params) instead of killing the worker
  process, so the trainer can stop and show it.
"""

from __future__ import annotations

import math
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, SupportsFloat

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from firmware.sim.bots import BotCars, BotConfig
from firmware.sim.gym_env import DEEPRACER_DT, DEEPRACER_VEHICLE, DeepRacerEnv
from firmware.sim.obstacles import place_obstacles, rectangles_overlap
from firmware.sim.reward import RewardFunctionError, load_reward_function
from firmware.sim.world import World, WorldConfig

IMMOBILE_SPEED = 0.05  # m/s
IMMOBILE_STEPS = 15  # one second at 15 Hz
RACE_TYPES = ("time_trial", "object_avoidance", "head_to_head")
CLOSEST_OBJ_GAP = 1.0  # m: DeepRacer's: an object this close to a start or reset place moves it
RESET_BEHIND_DIST = 1.0  # m: DeepRacer's DEFAULT_RESET_BEHIND_DIST, a reset behind a box
EPISODE_STATUSES = ("lap_complete", "off_track", "crashed", "reversed", "immobilized", "time_up")


@dataclass(frozen=True)
class EnvSettings:
    """Everything a worker process needs to build its environment (picklable)."""

    track: str
    metadata: dict[str, Any]
    reward_path: str | None = None  # None: DeepRacer's follow-the-centre-line example
    width: int = 80
    height: int = 60
    stack_size: int = 1
    max_steps: int = 2000
    start_stride: float = 0.05  # of a lap between consecutive episodes' starts
    race_type: str = "time_trial"
    obstacles: int = 3  # boxes per episode in object_avoidance
    bot_cars: int = 3  # head_to_head: DeepRacer's NUMBER_OF_BOT_CARS
    bot_speed: float = 0.2  # m/s, DeepRacer's BOT_CAR_SPEED
    lane_change: bool = False  # DeepRacer's IS_LANE_CHANGE
    randomize: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.race_type not in RACE_TYPES:
            raise ValueError(f"race_type must be one of {RACE_TYPES}, got {self.race_type!r}")
        if not (8 <= self.width <= 640 and 8 <= self.height <= 480):
            raise ValueError(f"observation size {self.width}×{self.height} is out of range")
        if self.max_steps < 1 or self.stack_size < 1:
            raise ValueError("max_steps and stack_size must be >= 1")
        self.bot_config()  # BotConfig checks the bots' settings

    def bot_config(self) -> BotConfig:
        return BotConfig(count=self.bot_cars, speed=self.bot_speed, lane_change=self.lane_change)


def to_observation_frame(rgb: NDArray[np.uint8], width: int, height: int) -> NDArray[np.uint8]:
    """Gray, area-resized ``(H, W)`` uint8: the steps of :func:`schemas.model_card.preprocess` for a
    gray input, before its normalisation (which the policy does)."""
    gray = (
        cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if rgb.ndim == 3 and rgb.shape[2] == 3
        else rgb.reshape(rgb.shape[:2])
    )
    if gray.shape != (height, width):
        gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    return np.asarray(gray, dtype=np.uint8)


class TrainingEnv(gym.Env[Any, Any]):
    """One DeepRacer training worker (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}  # noqa: RUF012 (gymnasium's API)

    def __init__(self, settings: EnvSettings, worker: int = 0, workers: int = 1) -> None:
        self.settings = settings
        reward = load_reward_function(settings.reward_path) if settings.reward_path else None
        self._config = WorldConfig(
            dt=DEEPRACER_DT,
            substeps=4,
            car=DEEPRACER_VEHICLE,
            randomization=_randomization(settings.randomize),
        )
        self.inner = DeepRacerEnv(
            settings.track,
            model_metadata=settings.metadata,
            reward_function=reward,
            world_config=self._config,
            max_steps=settings.max_steps,
        )
        self.action_space = self.inner.action_space
        s = settings
        camera = spaces.Box(0, 255, (s.stack_size, s.height, s.width), np.uint8)
        self.use_lidar = self.inner.use_lidar
        if self.use_lidar:
            lid = self._config.lidar
            lidar = spaces.Box(0.0, lid.max_range, (s.stack_size * lid.beams,), np.float32)
            self.observation_space: spaces.Space[Any] = spaces.Dict({"camera": camera, "lidar": lidar})
        else:
            self.observation_space = camera
        self._start = worker / max(workers, 1)
        self.episodes = 0
        self._frames: deque[NDArray[np.uint8]] = deque(maxlen=s.stack_size)
        self._scans: deque[NDArray[np.float32]] = deque(maxlen=s.stack_size)
        self._slow_steps = 0
        self._return = 0.0
        self.bots: BotCars | None = None
        if s.race_type == "head_to_head":
            self.bots = BotCars(self.inner.world.track, s.bot_config())

    # --- episodes -------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        options.setdefault("keep_clock", True)  # one simulator clock across the worker's episodes
        if "start_progress" not in options:
            fraction = (self._start + self.episodes * self.settings.start_stride) % 1.0
            options["start_progress"] = 100.0 * fraction
        if self.settings.race_type == "object_avoidance":
            self._place_obstacles(float(options["start_progress"]))
        if self.bots is not None:
            self._place_bots(float(options["start_progress"]), options)
        obs, info = self.inner.reset(seed=seed if seed is not None else self._next_seed(), options=options)
        self.episodes += 1
        self._slow_steps = 0
        self._return = 0.0
        self._frames.clear()
        self._scans.clear()
        return self._observe(obs, fill=True), info

    def _next_seed(self) -> int:
        return int(self.np_random.integers(2**31))

    def _place_obstacles(self, start_progress: float) -> None:
        """New boxes for this episode, none within 10 % of the start."""
        rng = self.np_random
        n = self.settings.obstacles
        spots = sorted((start_progress + 10 + rng.uniform(0, 80)) % 100 for _ in range(n))
        lanes = [("inner", "outer")[int(rng.integers(2))] for _ in range(n)]
        world = self.inner.world
        world.set_obstacles(place_obstacles(world.track, spots, lanes))  # type: ignore[arg-type]

    def _place_bots(self, start_progress: float, options: dict[str, Any]) -> None:
        """The bots back at DeepRacer's start places; a start within 1 m of one is in the other
        lane (DeepRacer's ``_get_car_start_model_state`` in training)."""
        assert self.bots is not None
        world = self.inner.world
        world.set_obstacles(self.bots.reset(self.np_random), self.bots.speeds)
        start = start_progress / 100 * world.track.length
        near = self.bots.near(start, CLOSEST_OBJ_GAP)
        if near is not None and "start_lateral" not in options:
            options["start_lateral"] = self.bots.lane_lateral(1 - self.bots.lane_of(near), start)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self.bots is not None:
            self.inner.world.set_obstacles(self.bots.step(self.inner.world.dt), self.bots.speeds)
        try:
            obs, reward, terminated, truncated, info = self.inner.step(action)
        except RewardFunctionError as exc:
            return self._reward_failed(exc)
        speed = self.inner.world.status.speed
        self._slow_steps = self._slow_steps + 1 if speed < IMMOBILE_SPEED else 0
        if not terminated and not truncated and self._slow_steps >= IMMOBILE_STEPS:
            terminated = True
            info["episode_status"] = "immobilized"
        self._return += float(reward)
        if self.bots is not None and info["episode_status"] == "crashed":
            self._bot_collision()
        if terminated or truncated:
            info["episode_summary"] = self._summary(info)
        return self._observe(obs), reward, terminated, truncated, info

    def _bot_collision(self) -> None:
        """DeepRacer's bots pause for their penalty when the car they touched is ahead of them
        (the bot ran into it); a car that ran into a bot gets no such grace."""
        assert self.bots is not None
        world = self.inner.world
        body = world.car.footprint()
        length = world.track.length
        car_s = world.status.s
        for ob in world.config.obstacles:
            if rectangles_overlap(body, ob.corners()):
                bot_s = world.track.project(ob.x, ob.y).s
                if (car_s - bot_s + length / 2) % length - length / 2 > 0:
                    self.bots.pause()
                return

    def _summary(self, info: dict[str, Any]) -> dict[str, Any]:
        status = info["episode_status"]
        return {
            "status": status,
            "progress": 100.0 if status == "lap_complete" else float(info["progress"]),
            "reward": self._return,
            "steps": int(self.inner.world.status.steps),
            "lap_time": info.get("lap_time"),
        }

    def _reward_failed(self, exc: RewardFunctionError) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        cause = exc.__cause__
        tb = "".join(traceback.format_exception(cause)) if cause is not None else ""
        params = self.inner.params()
        info = {
            "episode_status": "reward_error",
            "reward_error": {"message": str(exc), "traceback": tb, "params": _jsonable(params)},
        }
        frame = self.inner.world.render()
        obs = self._observe(frame)
        return obs, 0.0, True, False, info

    # --- observations ---------------------------------------------------------------------------
    def _observe(self, raw: Any, fill: bool = False) -> Any:
        camera = raw["camera"] if isinstance(raw, dict) else raw
        frame = to_observation_frame(camera, self.settings.width, self.settings.height)
        repeats = self.settings.stack_size if fill else 1
        for _ in range(repeats):
            self._frames.append(frame)
        stacked = np.stack(self._frames, axis=0)
        if not self.use_lidar:
            return stacked
        scan = np.asarray(raw["lidar"] if isinstance(raw, dict) else self.inner.world.lidar(), np.float32)
        for _ in range(repeats):
            self._scans.append(scan)
        return {"camera": stacked, "lidar": np.concatenate(list(self._scans))}

    def recover(self, status: str = "off_track") -> Any:
        """DeepRacer's evaluation after going off track or crashing (``_get_car_reset_model_state``):
        the car stopped in a lane where it was (off track: where it left the road, in the lane
        nearer to it), or :data:`RESET_BEHIND_DIST` behind a box within 1 m of that place, in the
        other lane than the box. A car that touched a bot car stays where it is, as in DeepRacer,
        stepped back just clear of the bot. Returns the new observation."""
        world = self.inner.world
        if self.bots is not None and status == "crashed":
            world.reset_to_track()
        else:
            self._respawn(world)
        self._slow_steps = 0
        frame = self.inner.world.render()
        if self.use_lidar:
            return self._observe({"camera": frame, "lidar": self.inner.world.lidar()})
        return self._observe(frame)

    def _respawn(self, world: World) -> None:
        track = world.track
        length = track.length
        s = world.status.s  # the front point's place; DeepRacer's spawn is its car's origin there
        lanes = track.lanes
        box = None
        if self.bots is None and world.config.obstacles:
            gaps = [
                (abs((track.project(o.x, o.y).s - s + length / 2) % length - length / 2), o)
                for o in world.config.obstacles
            ]
            gap, nearest = min(gaps, key=lambda g: g[0])
            box = nearest if gap < CLOSEST_OBJ_GAP else None
        if box is not None:
            box_s = track.project(box.x, box.y).s
            s = box_s - RESET_BEHIND_DIST
            box_inner = track.project(box.x, box.y).lateral * (1 if track.is_ccw else -1) > 0
            lane = lanes[0 if not box_inner else 1]
        else:
            lateral = world.status.lateral
            on_inner = lateral * (1 if track.is_ccw else -1) > 0
            lane = lanes[0 if on_inner else 1]
        i, t = track.segment_at(s)
        lx, ly = lane[i] + t * (lane[i + 1] - lane[i])
        origin_s = s
        # DeepRacer puts its car's origin at the spawn distance: the front point is 0.14 m on.
        world.respawn(origin_s + self.inner.start_offset, track.project(float(lx), float(ly)).lateral)

    def render(self) -> NDArray[np.uint8] | None:
        frame = self.inner.world.render()
        return np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame


def _randomization(enabled: bool) -> Any:
    from firmware.sim.render import Randomization

    return Randomization(enabled=enabled)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key == "waypoints":
            out[key] = f"[{len(value)} waypoints]"
        elif isinstance(value, float) and not math.isfinite(value):
            out[key] = str(value)
        else:
            out[key] = value
    return out


def make_vec_env(settings: EnvSettings, n_envs: int, seed: int = 0, processes: bool = True) -> Any:
    """``n_envs`` workers, each in its own process (``SubprocVecEnv``) unless ``processes`` is off or
    there is one worker, wrapped for SB3 (episode infos come from :class:`TrainingEnv`)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    def factory(rank: int) -> Any:
        def build() -> TrainingEnv:
            env = TrainingEnv(settings, rank, n_envs)
            env.reset(seed=seed + rank)
            return env

        return build

    fns = [factory(i) for i in range(n_envs)]
    if processes and n_envs > 1:
        return SubprocVecEnv(fns, start_method="forkserver")
    return DummyVecEnv(fns)
