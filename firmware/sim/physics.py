"""The car: a kinematic bicycle model with first-order actuator lag and command latency.

Conventions (docs/wire.md): ``steering`` in [-1, 1], -1 = full LEFT, +1 = full RIGHT (DonkeyCar).
The heading ``yaw`` is counter-clockwise from +x, so steering right turns the car clockwise.

Throttle → commanded speed (the only mapping; the car daemon, the trainer and the expert rely on it):

* ``throttle > 0``: ``min_speed + throttle · (max_speed − min_speed)`` m/s (linear, so 1.0 is
  ``max_speed`` and a tiny positive throttle is ``min_speed``);
* ``throttle <= 0``: 0 m/s — the car brakes to a stop (no reverse gear in the simulator).

The car then follows the commanded speed with a first-order lag (``speed_time_constant``) limited
by ``max_accel`` / ``max_brake``, and the steering angle follows its command with
``steering_time_constant``. Commands take effect ``latency`` seconds after they are given.
Everything runs on a fixed time step, so a run is a pure function of its inputs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class VehicleSpec:
    """A car's geometry and dynamics. The defaults are a 1:18 car (AWS DeepRacer size).

    Positions are of the rear axle's centre; ``front_offset`` is DeepRacer's reference point (the
    ``x``, ``y`` a reward function sees) ahead of it.
    """

    wheelbase: float = 0.165  # m, rear axle to front axle
    track_width: float = 0.16  # m, between left and right wheel centres
    length: float = 0.30  # m, body (for crashes)
    width: float = 0.20  # m, body
    rear_overhang: float = 0.06  # m, body behind the rear axle
    front_offset: float = 0.14  # m, DeepRacer's reference point ahead of the rear axle
    max_steering_deg: float = 30.0
    min_speed: float = 0.1  # m/s, the slowest a positive throttle drives
    max_speed: float = 4.0  # m/s, throttle 1.0
    max_accel: float = 4.0  # m/s²
    max_brake: float = 6.0  # m/s²
    speed_time_constant: float = 0.15  # s, first-order lag of speed towards the command
    steering_time_constant: float = 0.06  # s, first-order lag of the steering angle
    latency: float = 0.03  # s, from a command to the actuators acting on it

    def __post_init__(self) -> None:
        positive = {
            "wheelbase": self.wheelbase,
            "track_width": self.track_width,
            "length": self.length,
            "width": self.width,
            "max_steering_deg": self.max_steering_deg,
            "max_speed": self.max_speed,
            "max_accel": self.max_accel,
            "max_brake": self.max_brake,
        }
        for name, value in positive.items():
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"VehicleSpec.{name} must be positive, got {value}")
        if not 0 < self.max_steering_deg < 89:
            raise ValueError(f"VehicleSpec.max_steering_deg must be in (0, 89), got {self.max_steering_deg}")
        if not 0 <= self.min_speed <= self.max_speed:
            raise ValueError(f"VehicleSpec.min_speed must be in [0, max_speed], got {self.min_speed}")
        for name in ("speed_time_constant", "steering_time_constant", "latency", "rear_overhang"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"VehicleSpec.{name} must be >= 0, got {value}")

    @property
    def max_steering_rad(self) -> float:
        return math.radians(self.max_steering_deg)


def throttle_to_speed(throttle: float, car: VehicleSpec) -> float:
    """Commanded speed (m/s) for a throttle in [-1, 1] (see the module docstring)."""
    if not throttle > 0:  # also NaN
        return 0.0
    t = min(float(throttle), 1.0)
    return car.min_speed + t * (car.max_speed - car.min_speed)


def speed_to_throttle(speed: float, car: VehicleSpec) -> float:
    """The throttle that commands ``speed`` m/s (the inverse of :func:`throttle_to_speed`).

    Speeds at or below zero give 0 (brake); positive speeds are clipped to
    ``[min_speed, max_speed]`` first.
    """
    if not speed > 0:
        return 0.0
    span = car.max_speed - car.min_speed
    if span <= 0:
        return 1.0
    v = min(max(float(speed), car.min_speed), car.max_speed)
    # A tiny positive throttle already commands min_speed; keep the result strictly positive.
    return max((v - car.min_speed) / span, 1e-9)


def steering_to_angle_deg(steering: float, car: VehicleSpec) -> float:
    """DeepRacer's ``steering_angle`` (degrees, positive = LEFT) for a steering in [-1, 1]."""
    return -_clip_unit(steering) * car.max_steering_deg


def angle_deg_to_steering(angle_deg: float, car: VehicleSpec) -> float:
    """Steering in [-1, 1] (+1 = RIGHT) for DeepRacer's ``steering_angle`` in degrees (+ = LEFT)."""
    return _clip_unit(-float(angle_deg) / car.max_steering_deg)


def _clip_unit(value: float) -> float:
    if value != value:  # NaN never reaches an actuator
        return 0.0
    return max(-1.0, min(1.0, float(value)))


@dataclass(slots=True)
class CarState:
    """Ground truth of the car: rear-axle position (m), heading ``yaw`` (rad, CCW from +x),
    ``speed`` (m/s) and the actual front-wheel angle ``steering_angle`` (rad, + = left)."""

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    speed: float = 0.0
    steering_angle: float = 0.0

    def copy(self) -> CarState:
        return CarState(self.x, self.y, self.yaw, self.speed, self.steering_angle)


@dataclass(slots=True)
class Command:
    steering: float = 0.0  # [-1, 1], +1 = right
    throttle: float = 0.0  # [-1, 1]


@dataclass(slots=True)
class Car:
    """The bicycle model with its actuators. Advance it with :meth:`tick` at a fixed ``dt``."""

    config: VehicleSpec
    dt: float
    state: CarState = field(default_factory=CarState)
    command: Command = field(default_factory=Command)  # the latest command given
    applied: Command = field(default_factory=Command)  # the command the actuators act on now
    _pipeline: deque[Command] = field(default_factory=deque)
    _steer_alpha: float = 1.0
    _speed_alpha: float = 1.0

    def __post_init__(self) -> None:
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ValueError(f"time step must be positive, got {self.dt}")
        c = self.config
        self._steer_alpha = (
            1.0 if c.steering_time_constant == 0 else 1.0 - math.exp(-self.dt / c.steering_time_constant)
        )
        self._speed_alpha = (
            1.0 if c.speed_time_constant == 0 else 1.0 - math.exp(-self.dt / c.speed_time_constant)
        )
        self.reset(self.state)

    @property
    def latency_ticks(self) -> int:
        return round(self.config.latency / self.dt)

    def reset(self, state: CarState) -> None:
        self.state = state.copy()
        self.command = Command()
        self.applied = Command()
        self._pipeline = deque(Command() for _ in range(self.latency_ticks))

    def set_command(self, steering: float, throttle: float) -> Command:
        """Give a new command (clipped to [-1, 1], NaN → 0); it acts after the latency."""
        self.command = Command(_clip_unit(steering), _clip_unit(throttle))
        return self.command

    def tick(self) -> None:
        """Advance one time step."""
        c = self.config
        s = self.state
        if self._pipeline:
            self._pipeline.append(self.command)
            self.applied = self._pipeline.popleft()
        else:
            self.applied = self.command
        target_angle = -self.applied.steering * c.max_steering_rad
        s.steering_angle += (target_angle - s.steering_angle) * self._steer_alpha
        target_speed = throttle_to_speed(self.applied.throttle, c)
        dv = (target_speed - s.speed) * self._speed_alpha
        dv = max(-c.max_brake * self.dt, min(c.max_accel * self.dt, dv))
        v0 = s.speed
        s.speed = max(0.0, v0 + dv)
        v = 0.5 * (v0 + s.speed)
        # Exact integration along a circular arc for this step's mean speed and angle.
        yaw_rate = v * math.tan(s.steering_angle) / c.wheelbase
        dyaw = yaw_rate * self.dt
        if abs(dyaw) < 1e-9:
            s.x += v * self.dt * math.cos(s.yaw + 0.5 * dyaw)
            s.y += v * self.dt * math.sin(s.yaw + 0.5 * dyaw)
        else:
            radius = v / yaw_rate
            s.x += radius * (math.sin(s.yaw + dyaw) - math.sin(s.yaw))
            s.y -= radius * (math.cos(s.yaw + dyaw) - math.cos(s.yaw))
        s.yaw = (s.yaw + dyaw + math.pi) % (2 * math.pi) - math.pi

    # ---- body points -------------------------------------------------------------------------

    def front_point(self) -> tuple[float, float]:
        """DeepRacer's reference point (``params['x']``, ``params['y']``)."""
        s = self.state
        d = self.config.front_offset
        return s.x + d * math.cos(s.yaw), s.y + d * math.sin(s.yaw)

    def wheel_points(self) -> list[tuple[float, float]]:
        """Contact points of the four wheels: front-left, front-right, rear-left, rear-right."""
        s = self.state
        c, sn = math.cos(s.yaw), math.sin(s.yaw)
        half = self.config.track_width / 2
        wb = self.config.wheelbase
        pts = []
        for fwd in (wb, 0.0):
            for side in (half, -half):
                pts.append((s.x + fwd * c - side * sn, s.y + fwd * sn + side * c))
        return pts

    def footprint(self) -> list[tuple[float, float]]:
        """Corners of the body rectangle (counter-clockwise)."""
        s = self.state
        c, sn = math.cos(s.yaw), math.sin(s.yaw)
        back = -self.config.rear_overhang
        front = back + self.config.length
        half = self.config.width / 2
        return [
            (s.x + fx * c - side * sn, s.y + fx * sn + side * c)
            for fx, side in ((back, -half), (front, -half), (front, half), (back, half))
        ]
