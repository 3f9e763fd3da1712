"""The expert driver: pure pursuit on the centre line (or a given racing line) with a speed profile.

It drives from ground truth (the car's pose and speed) and returns ``(steering, throttle)`` in the
project's convention (steering +1 = right; throttle mapped to speed by
:func:`firmware.sim.physics.speed_to_throttle`), so its actions can be recorded as training data
for a model that only sees the camera image. Its steering is a smooth function of where the car is
on the track, and its speed follows the curvature ahead (slow for bends, fast on straights).

Given obstacles (or, as a policy, the world's), it avoids them: its path is shifted sideways round
each obstacle on the road, on the side with more room, with smooth ramps before and after, and it
slows to ``avoid_speed`` while passing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from firmware.sim.obstacles import Obstacle
from firmware.sim.physics import CarState, VehicleSpec, speed_to_throttle
from firmware.sim.track import FloatArray, Track, resample_closed

if TYPE_CHECKING:
    from firmware.sim.world import World

_SPACING = 0.05  # m between path samples


@dataclass(frozen=True, slots=True)
class ExpertConfig:
    """Tuning of the expert. Speeds in m/s, accelerations in m/s², distances in m."""

    max_speed: float = 2.0  # on straights
    min_speed: float = 0.5  # in the tightest bends
    max_lateral_accel: float = 2.2  # sets the speed for a bend: v = sqrt(a / curvature)
    max_accel: float = 2.0  # how fast the profile speeds up out of a bend
    max_brake: float = 2.5  # how early the profile slows down before a bend
    lookahead_min: float = 0.30  # pure-pursuit lookahead at standstill
    lookahead_time: float = 0.18  # s of travel added to the lookahead
    lookahead_max: float = 0.9
    corner_cut: float = 0.06  # m; lookahead shrinks in bends so the car cuts them by at most this
    preview_time: float = 0.35  # s; speed is chosen for where the car will be this soon
    steering_noise: float = 0.0  # std of Gaussian noise on steering (for diverse training data)
    avoid_margin: float = 0.11  # m of clearance kept between the car's side and an obstacle
    avoid_ramp_in: float = 1.3  # m along the track over which the path moves aside before one
    avoid_ramp_out: float = 0.7  # m over which it comes back after
    avoid_speed: float = 1.0  # m/s at most while passing an obstacle
    border_margin: float = 0.04  # m the car's centre keeps inside a border when moving aside

    def __post_init__(self) -> None:
        if not 0 < self.min_speed <= self.max_speed:
            raise ValueError("ExpertConfig needs 0 < min_speed <= max_speed")
        for name in ("max_lateral_accel", "max_accel", "max_brake", "lookahead_min", "lookahead_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ExpertConfig.{name} must be positive")
        if self.lookahead_max < self.lookahead_min:
            raise ValueError("ExpertConfig needs lookahead_min <= lookahead_max")
        if not self.steering_noise >= 0:
            raise ValueError("ExpertConfig.steering_noise must be >= 0")


class ExpertDriver:
    """Pure pursuit along a closed line with a curvature-based speed profile.

    ``line`` is an optional racing line (``K×2``, closed or not, in the driving direction); the
    track's centre line by default. ``seed`` drives the optional steering noise.
    """

    def __init__(
        self,
        track: Track,
        car: VehicleSpec | None = None,
        config: ExpertConfig | None = None,
        line: NDArray[np.floating] | None = None,
        seed: int | None = None,
        obstacles: Sequence[Obstacle] | None = None,
    ) -> None:
        self.track = track
        self.car = car or VehicleSpec()
        self.config = config or ExpertConfig()
        raw = track.center[:-1] if line is None else np.asarray(line, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != 2 or len(raw) < 4 or not np.isfinite(raw).all():
            raise ValueError("a racing line must be a finite K×2 array with at least 4 points")
        if np.allclose(raw[0], raw[-1]):
            raw = raw[:-1]
        self.base_path = resample_closed(raw, _SPACING)
        self.path = self.base_path
        self._n = len(self.path)
        self.curvature = _smooth_curvature(self.path)
        self.speed_profile = self._profile()
        self._rng = np.random.default_rng(seed)
        self._hint: int | None = None
        self.obstacles: tuple[Obstacle, ...] | None = None
        self.offsets = np.zeros(self._n)
        self.passing = np.zeros(self._n, dtype=bool)  # path points where it moves round an obstacle
        if obstacles is not None:
            self.set_obstacles(obstacles)

    def set_obstacles(self, obstacles: Sequence[Obstacle]) -> None:
        """Plan round these obstacles (replaces any earlier ones; empty: the plain line)."""
        self.obstacles = tuple(obstacles)
        offsets, slow = self._avoidance(self.obstacles)
        normals = _left_normals(self.base_path)
        self.path = self.base_path + offsets[:, None] * normals
        self.offsets = offsets
        self.passing = slow | (offsets != 0)
        self.curvature = _smooth_curvature(self.path)
        self.speed_profile = self._profile(slow)
        self._hint = None

    def _avoidance(self, obstacles: Sequence[Obstacle]) -> tuple[FloatArray, NDArray[np.bool_]]:
        """Lateral offset (m, + left) of each path point, and where to slow down."""
        c = self.config
        base = self.base_path
        n = self._n
        offsets = np.zeros(n)
        slow = np.zeros(n, dtype=bool)
        normals = _left_normals(base)
        tangents = np.stack([normals[:, 1], -normals[:, 0]], axis=1)
        side_room = self.car.width / 2 + c.avoid_margin
        for ob in obstacles:
            i = int(np.argmin((base[:, 0] - ob.x) ** 2 + (base[:, 1] - ob.y) ** 2))
            corners = np.asarray(ob.corners())
            # Each corner against its own nearest path point: right for long obstacles in bends.
            near = [int(np.argmin((base[:, 0] - cx) ** 2 + (base[:, 1] - cy) ** 2)) for cx, cy in corners]
            lat = np.array([(p - base[j]) @ normals[j] for p, j in zip(corners, near, strict=True)])
            along = (corners - base[i]) @ tangents[i]
            limit = self.track.width_at(ob.x, ob.y) / 2 - c.border_margin
            half = limit + c.border_margin
            if lat.min() > half or lat.max() < -half:
                continue  # beside the road: keeping inside the borders passes it
            left, right = lat.max() + side_room, lat.min() - side_room
            if left <= limit and (right < -limit or abs(left) <= abs(right)):
                target = left
            else:
                target = max(right, -limit)
            hold = self.car.length / 2 + 0.05
            lo = along.min() - hold
            hi = along.max() + hold
            profile = np.zeros(n)
            k = np.arange(
                -round((c.avoid_ramp_in - lo) / _SPACING), round((c.avoid_ramp_out + hi) / _SPACING) + 1
            )
            d = k * _SPACING
            weight = np.ones(len(k))
            before, after = d < lo, d > hi
            weight[before] = 0.5 - 0.5 * np.cos(np.pi * (d[before] - lo + c.avoid_ramp_in) / c.avoid_ramp_in)
            weight[after] = 0.5 + 0.5 * np.cos(np.pi * (d[after] - hi) / c.avoid_ramp_out)
            idx = (i + k) % n
            profile[idx] = target * np.clip(weight, 0.0, 1.0)
            stronger = np.abs(profile) > np.abs(offsets)
            offsets[stronger] = profile[stronger]
            slow[idx[(d >= lo - 0.5) & (d <= hi)]] = True
        return offsets, slow

    def _profile(self, slow: NDArray[np.bool_] | None = None) -> FloatArray:
        c = self.config
        v = np.sqrt(c.max_lateral_accel / np.maximum(np.abs(self.curvature), 1e-6))
        v = np.clip(v, c.min_speed, c.max_speed)
        if slow is not None:
            v[slow] = np.minimum(v[slow], max(c.avoid_speed, c.min_speed))
        # Braking (backwards) and acceleration (forwards) limits, twice around the loop to wrap.
        n = self._n
        for _ in range(2):
            for i in range(2 * n - 1, -1, -1):
                j, k = i % n, (i + 1) % n
                v[j] = min(v[j], math.sqrt(v[k] ** 2 + 2 * c.max_brake * _SPACING))
            for i in range(2 * n):
                j, k = i % n, (i - 1) % n
                v[j] = min(v[j], math.sqrt(v[k] ** 2 + 2 * c.max_accel * _SPACING))
        return v

    def reset(self) -> None:
        """Forget where the car was (call after teleporting the car)."""
        self._hint = None

    def _nearest(self, x: float, y: float) -> int:
        if self._hint is not None:
            window = np.arange(self._hint - 40, self._hint + 80) % self._n
            pts = self.path[window]
            d2 = (pts[:, 0] - x) ** 2 + (pts[:, 1] - y) ** 2
            i = int(np.argmin(d2))
            if d2[i] < 0.5**2:
                return int(window[i])
        d2 = (self.path[:, 0] - x) ** 2 + (self.path[:, 1] - y) ** 2
        return int(np.argmin(d2))

    def is_passing(self, state: CarState) -> bool:
        """Whether the car is where the path moves round an obstacle (or slows for one)."""
        return bool(self.passing[self._nearest(state.x, state.y)])

    def act(self, state: CarState) -> tuple[float, float]:
        """``(steering, throttle)`` for the car's ground truth ``state``."""
        c = self.config
        i = self._nearest(state.x, state.y)
        self._hint = i
        v = max(state.speed, 0.0)
        # Shrink the lookahead in bends: pure pursuit cuts a bend of radius R by about L²/2R.
        k_ahead = float(np.abs(self.curvature[(i + np.arange(0, 20, 2)) % self._n]).max())
        lookahead = min(c.lookahead_max, c.lookahead_min + c.lookahead_time * v)
        if k_ahead > 1e-6:
            lookahead = min(lookahead, max(0.18, math.sqrt(2 * c.corner_cut / k_ahead)))
        # The target: the first path point at least `lookahead` away from the rear axle.
        j = i
        tx, ty = self.path[j]
        for step in range(1, self._n):
            j = (i + step) % self._n
            tx, ty = self.path[j]
            if (tx - state.x) ** 2 + (ty - state.y) ** 2 >= lookahead**2:
                break
        dist = math.hypot(tx - state.x, ty - state.y)
        alpha = math.atan2(ty - state.y, tx - state.x) - state.yaw
        angle = math.atan2(2.0 * self.car.wheelbase * math.sin(alpha), max(dist, 1e-6))
        steering = -angle / self.car.max_steering_rad
        if c.steering_noise > 0:
            steering += float(self._rng.normal(0.0, c.steering_noise))
        steering = max(-1.0, min(1.0, steering))
        ahead = round((c.preview_time * v) / _SPACING)
        target_speed = float(self.speed_profile[(i + ahead) % self._n])
        return steering, speed_to_throttle(target_speed, self.car)

    def __call__(self, world: World) -> tuple[float, float]:
        """The expert as a policy for :func:`firmware.sim.run.drive`: acts on the ground truth,
        avoiding the world's obstacles unless it was given its own."""
        if self.obstacles is None:
            self.set_obstacles(world.config.obstacles)
        return self.act(world.car.state)


def _left_normals(path: FloatArray) -> FloatArray:
    """Unit normals pointing left of a closed path's direction of travel."""
    d = np.roll(path, -1, axis=0) - np.roll(path, 1, axis=0)
    d /= np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12)[:, None]
    return np.stack([-d[:, 1], d[:, 0]], axis=1)


def _smooth_curvature(path: FloatArray, window_m: float = 0.3) -> FloatArray:
    """Curvature from points ±``window_m`` apart, then smoothed: steady on coarse waypoint data."""
    n = len(path)
    h = max(1, round(window_m / _SPACING))
    a, b, c = np.roll(path, h, axis=0), path, np.roll(path, -h, axis=0)
    ab, bc, ac = b - a, c - b, c - a
    cross = ab[:, 0] * bc[:, 1] - ab[:, 1] * bc[:, 0]
    denom = np.hypot(*ab.T) * np.hypot(*bc.T) * np.hypot(*ac.T)
    k = 2.0 * cross / np.maximum(denom, 1e-12)
    kernel = np.ones(2 * h + 1) / (2 * h + 1)
    wrapped = np.concatenate([k[-h:], k, k[:h]])
    return np.asarray(np.convolve(wrapped, kernel, mode="valid")[:n])
