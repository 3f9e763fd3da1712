"""Bot cars for head-to-head races, driven as DeepRacer's simulator drives them.

DeepRacer's ``BotCarsCtrl`` (deepracer-simapp, ``markov/agent_ctrl/bot_cars_agent_ctrl.py``):

* ``count`` bots start at centre-line distances ``linspace(min_distance, length − 1, count)`` from
  waypoint 0, in alternating lanes (inner first), or, with ``randomize``, perturbed within
  ``min_distance`` of their neighbours and in random lanes;
* a lane is the line halfway between the centre line and a border, and a bot's position is
  parameterised by the centre-line distance: it advances ``speed`` m/s *along the centre line*
  (DeepRacer's ``bot_car_speed``, 0.2 m/s by default), so it is a little faster on the outside of
  a bend, exactly as DeepRacer's lane splines make it;
* with ``lane_change`` a bot moves to the other lane every ``lane_change_time`` seconds (uniform
  3–5 s) plus the change's own duration, the change spanning ``lane_change_distance`` (1 m) of
  travel (DeepRacer fits a spline between the lanes; here the lateral blend is a smoothstep);
* :meth:`BotCars.pause` stops every bot for ``penalty_s`` (2 s): what DeepRacer does when the
  racing car is hit from behind by a bot (the car ahead of the bot it touched).

A bot is an :class:`~firmware.sim.obstacles.Obstacle` of kind ``car`` with DeepRacer's
``BOT_CAR_DIMENSION`` footprint; :meth:`World.set_obstacles` moves them, so the camera, the lidar,
collisions and the reward ``params`` see them where they are now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from firmware.sim.obstacles import Obstacle
from firmware.sim.track import Track

BOT_LENGTH = 0.32352  # m, DeepRacer's ObstacleDimensions.BOT_CAR_DIMENSION (width, length)
BOT_WIDTH = 0.1961
BOT_HEIGHT = 0.16


@dataclass(frozen=True, slots=True)
class BotConfig:
    """DeepRacer's bot-car settings (their defaults)."""

    count: int = 3  # NUMBER_OF_BOT_CARS
    speed: float = 0.2  # m/s along the centre line, BOT_CAR_SPEED
    min_distance: float = 2.0  # m, MIN_DISTANCE_BETWEEN_BOT_CARS
    randomize: bool = False  # RANDOMIZE_BOT_CAR_LOCATIONS
    lane_change: bool = False  # IS_LANE_CHANGE
    lane_change_time: tuple[float, float] = (3.0, 5.0)  # s, LOWER/UPPER_LANE_CHANGE_TIME
    lane_change_distance: float = 1.0  # m, LANE_CHANGE_DISTANCE
    penalty_s: float = 2.0  # s the bots pause after hitting the car from behind, PENALTY_SECONDS

    def __post_init__(self) -> None:
        if not 0 <= self.count <= 20:
            raise ValueError(f"BotConfig.count must be in [0, 20], got {self.count}")
        if not (0 < self.speed <= 4.0 and math.isfinite(self.speed)):
            raise ValueError(f"BotConfig.speed must be in (0, 4] m/s, got {self.speed}")
        low, high = self.lane_change_time
        if not 0 <= low <= high:
            raise ValueError("BotConfig.lane_change_time must be (low, high) with 0 <= low <= high")
        if not (self.min_distance >= 0 and self.lane_change_distance > 0 and self.penalty_s >= 0):
            raise ValueError("BotConfig distances must be positive and penalty_s >= 0")


@dataclass(slots=True)
class _Bot:
    distance: float  # centre-line distance from waypoint 0
    lane: int  # 0 inner, 1 outer: the lane it is in (or leaving)
    change_start: float = math.inf  # travelled distance at which its next lane change begins
    travelled: float = 0.0


class BotCars:
    """The bots of one track (see the module docstring). Deterministic given the ``rng``."""

    def __init__(self, track: Track, config: BotConfig | None = None) -> None:
        self.track = track
        self.config = config or BotConfig()
        self._bots: list[_Bot] = []
        self._pause_s = 0.0
        self._rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> tuple[Obstacle, ...]:
        """Place the bots for a new episode; returns them as obstacles."""
        c = self.config
        self._rng = rng
        self._pause_s = 0.0
        dists = np.linspace(c.min_distance, self.track.length - 1.0, c.count) if c.count else np.array([])
        lanes = [i % 2 for i in range(c.count)]  # alternating, inner first
        if c.randomize:
            for i in rng.permutation(c.count):
                lo = c.min_distance if i == 0 else dists[i - 1] + c.min_distance
                hi = self.track.length - 1.0 if i == c.count - 1 else dists[i + 1] - c.min_distance
                if lo < hi:
                    dists[i] = rng.uniform(lo, hi)
            lanes = [int(rng.integers(2)) for _ in range(c.count)]
        self._bots = [_Bot(float(d) % self.track.length, lane) for d, lane in zip(dists, lanes, strict=True)]
        for bot in self._bots:
            self._schedule_change(bot)
        return self.obstacles()

    def _schedule_change(self, bot: _Bot) -> None:
        if not self.config.lane_change:
            bot.change_start = math.inf
            return
        wait_s = float(self._rng.uniform(*self.config.lane_change_time))
        bot.change_start = bot.travelled + wait_s * self.config.speed

    def step(self, dt: float) -> tuple[Obstacle, ...]:
        """Advance ``dt`` seconds (nothing moves while paused)."""
        moving = dt
        if self._pause_s > 0:
            moving = max(0.0, dt - self._pause_s)
            self._pause_s = max(0.0, self._pause_s - dt)
        ds = moving * self.config.speed
        length = self.track.length
        for bot in self._bots:
            bot.distance = (bot.distance + ds) % length
            bot.travelled += ds
            if bot.travelled >= bot.change_start + self.config.lane_change_distance:
                bot.lane = 1 - bot.lane
                self._schedule_change(bot)
        return self.obstacles()

    def pause(self, seconds: float | None = None) -> None:
        """Stop the bots for ``seconds`` (default ``penalty_s``), added to any pause running."""
        self._pause_s += self.config.penalty_s if seconds is None else seconds

    @property
    def paused(self) -> bool:
        return self._pause_s > 0

    @property
    def speeds(self) -> tuple[float, ...]:
        """Each bot's speed as DeepRacer reports it (``objects_speed``: the set speed)."""
        return tuple(self.config.speed for _ in self._bots)

    def obstacles(self) -> tuple[Obstacle, ...]:
        return tuple(self._pose(bot) for bot in self._bots)

    def _pose(self, bot: _Bot) -> Obstacle:
        x, y, yaw = self._lane_pose(bot.lane, bot.distance)
        into = bot.travelled - bot.change_start
        if 0 <= into < self.config.lane_change_distance:
            u = into / self.config.lane_change_distance
            w = u * u * (3 - 2 * u)  # smoothstep: leaves and joins the lanes tangentially
            x2, y2, _ = self._lane_pose(1 - bot.lane, bot.distance)
            # The heading follows the blended path: the lane's plus the lateral drift's angle.
            dw = 6 * u * (1 - u) / self.config.lane_change_distance
            drift = math.atan2(dw * ((x2 - x) * -math.sin(yaw) + (y2 - y) * math.cos(yaw)), 1.0)
            x, y, yaw = x + w * (x2 - x), y + w * (y2 - y), yaw + drift
        return Obstacle(x, y, yaw, BOT_LENGTH, BOT_WIDTH, BOT_HEIGHT, "car")

    def _lane_pose(self, lane: int, distance: float) -> tuple[float, float, float]:
        """The lane's point at centre-line distance ``distance`` and the lane's direction there."""
        i, t = self.track.segment_at(distance)
        pts = self.track.lanes[lane]
        a, b = pts[i], pts[i + 1]
        x, y = a + t * (b - a)
        return float(x), float(y), math.atan2(float(b[1] - a[1]), float(b[0] - a[0]))

    def lane_lateral(self, lane: int, distance: float) -> float:
        """Signed offset (m, > 0 left) of the lane from the centre line at ``distance``."""
        x, y, _ = self._lane_pose(lane, distance)
        return self.track.project(x, y).lateral

    def near(self, distance: float, gap: float = 1.0) -> int | None:
        """The bot within ``gap`` metres of centre-line distance ``distance``, if any (DeepRacer's
        ``_get_closest_obj`` with ``CLOSEST_OBJ_GAP``)."""
        length = self.track.length
        best, best_gap = None, gap
        for i, bot in enumerate(self._bots):
            d = abs((bot.distance - distance + length / 2) % length - length / 2)
            if d < best_gap:
                best, best_gap = i, d
        return best

    def lane_of(self, index: int) -> int:
        return self._bots[index].lane
