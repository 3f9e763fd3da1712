"""The simulated world: one car on one track, stepped at a fixed time step.

    world = World("oval", seed=1)
    status = world.step(steering=0.0, throttle=0.4)   # advances config.dt seconds
    image = world.render()                            # (120, 160, 3) uint8 RGB
    status.progress, status.lap, status.off_track, status.lap_times

Everything is a pure function of the track, the config, the seed and the commands, so the same seed
and the same commands give the same frames. Progress, laps and on-track tests follow DeepRacer:
they are measured at the car's front reference point; the finish line is where the episode
started (waypoint 0 unless :meth:`World.reset` was given another start).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from firmware.sim.labels import FrameLabels, LabelConfig, frame_labels
from firmware.sim.lidar import Lidar, LidarConfig
from firmware.sim.obstacles import Obstacle, rectangles_overlap
from firmware.sim.physics import Car, CarState, VehicleSpec, steering_to_angle_deg, throttle_to_speed
from firmware.sim.render import Image, Randomization, RenderConfig, Renderer
from firmware.sim.track import Projection, Track
from firmware.sim.tracks import get_track

EventKind = Literal["lap", "off_track", "back_on_track", "crash", "reversed", "reset_to_track"]


@dataclass(frozen=True, slots=True)
class WorldConfig:
    """Everything about a world except the track. ``dt`` is the duration of one :meth:`World.step`;
    physics integrates it in ``substeps`` equal ticks."""

    dt: float = 1.0 / 30.0
    substeps: int = 2
    car: VehicleSpec = field(default_factory=VehicleSpec)
    camera: RenderConfig = field(default_factory=RenderConfig)
    lidar: LidarConfig = field(default_factory=LidarConfig)
    randomization: Randomization = field(default_factory=Randomization)
    obstacles: tuple[Obstacle, ...] = ()
    reverse_steps: int = 15  # consecutive steps of falling progress that count as driving backwards

    def __post_init__(self) -> None:
        if not (0 < self.dt <= 1.0 and math.isfinite(self.dt)):
            raise ValueError(f"WorldConfig.dt must be in (0, 1] s, got {self.dt}")
        if not 1 <= self.substeps <= 100:
            raise ValueError(f"WorldConfig.substeps must be in [1, 100], got {self.substeps}")
        if self.reverse_steps < 1:
            raise ValueError(f"WorldConfig.reverse_steps must be >= 1, got {self.reverse_steps}")


@dataclass(frozen=True, slots=True)
class SimEvent:
    """Something that happened during a step. ``time`` is simulated seconds since reset."""

    kind: EventKind
    time: float
    lap: int  # laps completed so far (for "lap": including this one)
    progress: float
    lap_time: float | None = None  # for "lap"


@dataclass(frozen=True, slots=True)
class WorldStatus:
    """The world after a step (or a reset)."""

    time: float  # simulated seconds since reset
    steps: int  # steps since reset
    lap: int  # laps completed
    progress: float  # % of the current lap (DeepRacer's: 100 on the step a lap completes)
    lap_times: tuple[float, ...]  # seconds, one per completed lap
    s: float  # metres along the centre line (from waypoint 0) of the front reference point
    distance_from_center: float  # m, of the front reference point
    lateral: float  # signed, > 0 left of the centre line
    speed: float  # m/s, actual
    all_wheels_on_track: bool
    off_track: bool  # all four wheels off the track
    reversed: bool  # progress has been falling for ``reverse_steps`` steps
    crashed: bool  # touched an obstacle (the car is stopped until reset)
    events: tuple[SimEvent, ...] = ()  # what happened during this step

    @property
    def lap_completed(self) -> bool:
        return any(e.kind == "lap" for e in self.events)

    @property
    def last_lap_time(self) -> float | None:
        return self.lap_times[-1] if self.lap_times else None

    @property
    def total_progress(self) -> float:
        """Laps as a percentage: 250.0 is two and a half laps."""
        return 100.0 * self.lap + (0.0 if self.lap_completed else self.progress)


class World:
    """One car on one track. Not thread-safe (see :class:`firmware.sim.simulated_body.SimBody`)."""

    def __init__(
        self, track: Track | str | Path, config: WorldConfig | None = None, seed: int | None = None
    ) -> None:
        self.track = get_track(track)
        self.config = config or WorldConfig()
        c = self.config
        self.dt = c.dt
        self.car = Car(c.car, c.dt / c.substeps)
        self.renderer = Renderer(self.track, c.camera, c.obstacles)
        self._lidar: Lidar | None = None
        self.bot_speeds: tuple[float, ...] | None = None  # set when the obstacles are bot cars
        self.rng = np.random.default_rng(seed)
        self._seed = seed
        # How far a wheel can be from the front reference point (the on-track fast path uses it).
        half = c.car.track_width / 2
        self._wheel_reach = max(
            math.hypot(c.car.front_offset, half), math.hypot(c.car.wheelbase - c.car.front_offset, half)
        )
        self.reset(seed)

    # ---- episodes ----------------------------------------------------------------------------

    def reset(
        self,
        seed: int | None = None,
        *,
        start_progress: float = 0.0,
        lateral: float = 0.0,
        yaw_offset: float = 0.0,
        speed: float = 0.0,
        line_offset: float = 0.0,
    ) -> WorldStatus:
        """Start a new episode: the car on the track at ``start_progress`` % from waypoint 0 (that
        point is then the finish line), ``lateral`` metres left of the centre line, turned
        ``yaw_offset`` radians from the track direction, its front reference point ``line_offset``
        metres past the line (DeepRacer puts the car's origin on the line, so its reference point
        starts 0.14 m past it). A ``seed`` re-seeds everything random."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
            self._seed = seed
        if not 0 <= start_progress <= 100:
            raise ValueError(f"start_progress must be in [0, 100], got {start_progress}")
        self.renderer.randomize(self.rng, self.config.randomization)
        self.renderer.reset_frames()
        if not (math.isfinite(line_offset) and abs(line_offset) < self.track.length / 4):
            raise ValueError(
                f"line_offset must be finite and under a quarter of the track, got {line_offset}"
            )
        s = start_progress / 100 * self.track.length
        self._place((s + line_offset) % self.track.length, lateral, yaw_offset, speed)
        self.time = 0.0
        self.steps = 0
        self.lap = 0
        self.lap_times: list[float] = []
        self._lap_start = 0.0
        fx, fy = self.car.front_point()
        self._start_s = s
        proj = self.track.project(fx, fy)
        # Progress counts from the start line (the front point sits on it, up to projection).
        ahead = (proj.s - s + self.track.length / 2) % self.track.length - self.track.length / 2
        self._travelled = ahead
        self._prev_s = proj.s
        self._reverse_count = 0
        self._crashed = False
        self._status = self._measure(proj, (), progress=100.0 * ahead / self.track.length)
        return self._status

    def _place(self, s: float, lateral: float, yaw_offset: float, speed: float) -> None:
        """Put the car's front reference point at ``s`` along the track, ``lateral`` m to the left."""
        t = self.track
        heading = t.heading_at(s)
        px, py = t.point_at(s)
        px -= lateral * math.sin(heading)
        py += lateral * math.cos(heading)
        yaw = heading + yaw_offset
        back = self.config.car.front_offset
        state = CarState(px - back * math.cos(yaw), py - back * math.sin(yaw), yaw, speed, 0.0)
        self.car.reset(state)

    def reset_to_track(self) -> WorldStatus:
        """Put the car back on the centre line where it left it (DeepRacer's reset after going off
        track or crashing), stopped, keeping time, laps and progress."""
        proj = self.track.project(*self.car.front_point())
        s = proj.s
        if self.config.obstacles:
            s = self._clear_of_obstacles(s)
        self._place(s, 0.0, 0.0, 0.0)
        fx, fy = self.car.front_point()
        proj = self.track.project(fx, fy)
        self._prev_s = proj.s
        self._reverse_count = 0
        self._crashed = False
        self._status = self._measure(proj, (), progress=self._status.progress)
        return self._status

    def respawn(self, s: float, lateral: float = 0.0) -> WorldStatus:
        """Put the car, stopped, with its front reference point at centre-line distance ``s``,
        ``lateral`` m left of it, keeping time and laps; progress follows the move (a car put
        back 1 m has 1 m less progress), as DeepRacer's, whose progress is its position."""
        length = self.track.length
        old_s = self.track.project(*self.car.front_point()).s
        self._place(s % length, lateral, 0.0, 0.0)
        proj = self.track.project(*self.car.front_point())
        self._travelled += (proj.s - old_s + length / 2) % length - length / 2
        self._prev_s = proj.s
        self._reverse_count = 0
        self._crashed = False
        progress = min(max(100.0 * self._travelled / length, 0.0), 100.0)
        self._status = self._measure(proj, (), progress=progress)
        return self._status

    def place_car(self, progress: float, lateral: float = 0.0, yaw_offset: float = 0.0) -> WorldStatus:
        """Move the car, stopped, to ``progress`` % of the track, ``lateral`` m left of the centre
        line, turned ``yaw_offset`` rad, keeping the look, time and laps (a camera shot of a scene)."""
        if not 0 <= progress <= 100:
            raise ValueError(f"progress must be in [0, 100], got {progress}")
        self._place(progress / 100 * self.track.length, lateral, yaw_offset, 0.0)
        proj = self.track.project(*self.car.front_point())
        self._prev_s = proj.s
        self._reverse_count = 0
        self._crashed = False
        self._status = self._measure(proj, (), progress=self._status.progress)
        return self._status

    def set_obstacles(self, obstacles: tuple[Obstacle, ...], speeds: tuple[float, ...] | None = None) -> None:
        """Move the obstacles (bot cars driving round): the camera, the lidar, collisions and the
        reward params see them where they are now. ``speeds`` (m/s, one per obstacle) marks them as
        DeepRacer's bot cars, whose ``objects_speed`` and ``objects_heading`` the params report."""
        if speeds is not None and len(speeds) != len(obstacles):
            raise ValueError("set_obstacles needs one speed per obstacle")
        self.config = replace(self.config, obstacles=tuple(obstacles))
        self.renderer.obstacles = self.config.obstacles
        if self._lidar is not None:
            self._lidar.set_obstacles(self.config.obstacles)
        self.bot_speeds = speeds

    def _clear_of_obstacles(self, s: float) -> float:
        """Step back along the track until the car's body is clear of every obstacle."""
        for back in np.arange(0.0, 3.0, 0.05):
            s_try = (s - back) % self.track.length
            self._place(s_try, 0.0, 0.0, 0.0)
            if not self._touching_obstacle():
                return s_try
        return s

    # ---- stepping ----------------------------------------------------------------------------

    def step(self, steering: float, throttle: float) -> WorldStatus:
        """Command the car (steering [-1, 1], +1 = right; throttle [-1, 1], see
        :mod:`firmware.sim.physics`) and advance ``config.dt`` seconds."""
        car = self.car
        car.set_command(steering, throttle)
        before = car.state.copy() if self.config.obstacles else None
        if self._crashed:
            car.state.speed = 0.0
        else:
            for _ in range(self.config.substeps):
                car.tick()
        t_before = self.time
        self.steps += 1
        self.time = self.steps * self.dt
        events: list[SimEvent] = []
        if before is not None and not self._crashed and self._touching_obstacle():
            car.state = before
            car.state.speed = 0.0
            self._crashed = True
        fx, fy = car.front_point()
        proj = self.track.project(fx, fy)
        length = self.track.length
        ds = (proj.s - self._prev_s + length / 2) % length - length / 2
        self._prev_s = proj.s
        travelled_before = self._travelled
        self._travelled += ds
        self._reverse_count = self._reverse_count + 1 if ds < 0 else 0
        progress = 100.0 * self._travelled / length
        if self._travelled >= length:
            # Interpolate the moment the front point crossed the line within this step.
            frac = (length - travelled_before) / ds if ds > 0 else 1.0
            t_cross = t_before + min(max(frac, 0.0), 1.0) * self.dt
            lap_time = t_cross - self._lap_start
            self._lap_start = t_cross
            self._travelled -= length
            self.lap += 1
            self.lap_times.append(lap_time)
            progress = 100.0
            events.append(SimEvent("lap", self.time, self.lap, 100.0, lap_time))
        status = self._measure(proj, events, progress=min(progress, 100.0))
        prev = self._status
        if status.off_track and not prev.off_track:
            events.append(SimEvent("off_track", self.time, self.lap, status.progress))
        elif prev.off_track and not status.off_track:
            events.append(SimEvent("back_on_track", self.time, self.lap, status.progress))
        if status.crashed and not prev.crashed:
            events.append(SimEvent("crash", self.time, self.lap, status.progress))
        if status.reversed and not prev.reversed:
            events.append(SimEvent("reversed", self.time, self.lap, status.progress))
        if events:
            status = replace(status, events=tuple(events))
        self._status = status
        return status

    def _measure(self, proj: Projection, events: list[SimEvent] | tuple[()], progress: float) -> WorldStatus:
        car = self.car
        if proj.distance + self._wheel_reach < self.track.min_half_width:
            on_any, on_all = True, True  # every wheel is certainly between the borders
        else:
            on = self.track.on_track(np.array(car.wheel_points()))
            on_any, on_all = bool(on.any()), bool(on.all())
        return WorldStatus(
            time=self.time,
            steps=self.steps,
            lap=self.lap,
            progress=progress,
            lap_times=tuple(self.lap_times),
            s=proj.s,
            distance_from_center=proj.distance,
            lateral=proj.lateral,
            speed=car.state.speed,
            all_wheels_on_track=on_all,
            off_track=not on_any,
            reversed=self._reverse_count >= self.config.reverse_steps,
            crashed=self._crashed,
            events=tuple(events),
        )

    def _touching_obstacle(self) -> bool:
        body = self.car.footprint()
        return any(rectangles_overlap(body, ob.corners()) for ob in self.config.obstacles)

    # ---- sensors and ground truth ------------------------------------------------------------

    @property
    def status(self) -> WorldStatus:
        return self._status

    @property
    def state(self) -> CarState:
        """A copy of the car's ground truth (rear-axle pose, speed, wheel angle)."""
        return self.car.state.copy()

    @property
    def commanded_speed(self) -> float:
        """The speed (m/s) the latest throttle command asks for (DeepRacer's ``speed``)."""
        return throttle_to_speed(self.car.command.throttle, self.config.car)

    def params(self) -> dict[str, Any]:
        """DeepRacer's reward ``params`` now (see :func:`deepracer_params`)."""
        return deepracer_params(self)

    def render(self) -> Image:
        """The camera image now: ``(H, W, 3)`` RGB uint8 (``(H, W, 1)`` if grayscale)."""
        s = self.car.state
        return self.renderer.render(s.x, s.y, s.yaw)

    def labels(self, config: LabelConfig | None = None) -> FrameLabels:
        """Ground-truth labels of the current frame (see :mod:`firmware.sim.labels`)."""
        return frame_labels(self, config)

    def lidar(self) -> NDArray[np.float32]:
        """Lidar ranges (m) now, one per beam (see :class:`LidarConfig`)."""
        if self._lidar is None:
            self._lidar = Lidar(self.track, self.config.lidar, self.config.obstacles)
        s = self.car.state
        return self._lidar.scan(s.x, s.y, s.yaw, self.rng)


# --- the world in DeepRacer's terms (what a reward function reads) ---------------------------------
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
            # DeepRacer reports a speed and a heading (its yaw, radians) for bot cars only.
            objects_speed=list(world.bot_speeds) if world.bot_speeds else [0.0] * len(obstacles),
            objects_heading=[o.yaw for o in obstacles] if world.bot_speeds else [0.0] * len(obstacles),
            objects_distance_from_center=[p.distance for p in projections],
            objects_distance=pdists,
        )
    return params
