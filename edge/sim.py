"""The car daemon on a simulated body, and the ``expert`` pilot that drives from the sim's truth.

:class:`SimCarBody` adapts :class:`firmware.sim.SimBody` to the daemon's body: camera and
actuators as they are, plus what the simulator knows for telemetry and recorded frames (speed,
lap, progress, off-track, pose) and its events (laps, off-track, crashes, recoveries). With the
``lockstep`` clock each control tick advances the world by exactly one tick period, so a run is
repeatable whatever the machine's load; ``realtime`` follows the wall clock like a real car.

:class:`ExpertPilot` is an autopilot that reads the ground truth and asks the simulator's expert
driver (pure pursuit with a speed profile) what to do; the demo records its training laps with it.
:class:`RaceLinePilot` (``race-line``) is the same expert on an optimised racing line (``sim.race_line``).
"""

import logging
import math
import threading
from typing import Any

import numpy as np

from edge.config import CarConfig, ConfigError
from edge.pilots import Decision, Pilot
from firmware.camera import Frame
from firmware.car_body import Body, BodyState, LidarScan, PendingScan
from firmware.sim import ExpertConfig, ExpertDriver, Randomization, RenderConfig, SimBody, WorldConfig
from firmware.sim.lidar import Lidar
from firmware.sim.obstacles import Obstacle, place_obstacles
from firmware.sim.race_line import RaceLineDriver
from firmware.sim.track import TrackError
from firmware.sim.tracks import get_track

log = logging.getLogger(__name__)


class SimCarBody(Body):
    kind = "sim"

    def __init__(self, sim: SimBody, tick_s: float | None = None) -> None:
        super().__init__(sim.camera, sim.actuators)
        self.sim = sim
        self.tick_s = tick_s  # lockstep: simulated seconds per control tick
        self._off_track_in_lap = 0
        self._scanner: tuple[Lidar, tuple[Obstacle, ...]] | None = None  # recorded scans' own lidar
        self._scanner_lock = threading.Lock()

    @property
    def capabilities(self) -> list[str]:
        return [
            *super().capabilities,
            f"sim:track:{self.sim.world.track.name}",
            f"sim:clock:{self.sim.clock}",
            "sensor:lidar",
        ]

    @property
    def lockstep(self) -> bool:  # type: ignore[override]
        return self.sim.clock == "lockstep"

    def before_tick(self) -> None:
        if self.sim.clock == "lockstep" and self.tick_s:
            self.sim.advance(self.tick_s)

    def state(self) -> BodyState:
        truth = self.sim.ground_truth()
        s, st = truth.state, truth.status
        return BodyState(
            speed=round(float(s.speed), 4),
            lap=st.lap,
            progress=round(min(100.0, max(0.0, float(st.progress))), 3),
            off_track=bool(st.off_track),
            extra={
                "x": round(float(s.x), 4),
                "y": round(float(s.y), 4),
                "yaw": round(float(s.yaw), 5),
                "distance_from_center": round(float(st.distance_from_center), 4),
                "sim_time": round(float(truth.time), 4),
                "track": self.sim.world.track.name,
            },
        )

    def range_ahead(self, half_angle_deg: float = 10.0) -> float | None:
        """The simulated lidar's nearest return within ``half_angle_deg`` of the heading, from the nose."""
        world = self.sim.world
        ranges = world.lidar()
        angles = np.degrees(world.config.lidar.angles())
        ahead = ranges[np.abs(angles) <= half_angle_deg]
        if ahead.size == 0:
            return None
        car = world.config.car
        return max(0.0, float(ahead.min()) - (car.length - car.rear_overhang))

    def lidar_scan(self) -> PendingScan:
        """The simulated lidar's scan of this instant. The control thread only notes the pose and
        the obstacles (bot cars move); the ray casting (about 1 ms) happens when the scan is read,
        on the recorder's thread, with a lidar of its own (the world's is the control thread's)."""
        truth = self.sim.ground_truth()
        s, world = truth.state, self.sim.world
        t_ns, obstacles = self.sim.now_ns(), world.config.obstacles
        x, y, yaw = float(s.x), float(s.y), float(s.yaw)
        c = world.config.lidar

        def scan() -> LidarScan:
            with self._scanner_lock:
                if self._scanner is None:
                    self._scanner = (Lidar(world.track, c, obstacles), obstacles)
                lidar, known = self._scanner
                if known is not obstacles:
                    lidar.set_obstacles(obstacles)
                    self._scanner = (lidar, obstacles)
                ranges = lidar.scan(x, y, yaw)  # no noise: the world's generator is the control thread's
            return LidarScan(t_ns, ranges.tolist(), c.min_range, c.max_range, c.fov_deg)

        return scan

    def poll_events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for e in self.sim.poll_events():
            progress = round(min(100.0, max(0.0, float(e.progress))), 3)
            if e.kind == "lap" and e.lap >= 1 and e.lap_time:
                out.append(
                    {
                        "type": "lap",
                        "lap": e.lap,
                        "lap_time_s": round(float(e.lap_time), 4),
                        "off_track_count": self._off_track_in_lap,
                    }
                )
                self._off_track_in_lap = 0
            elif e.kind == "off_track":
                self._off_track_in_lap += 1
                out.append({"type": "off_track", "progress": progress, "lap": e.lap})
            elif e.kind in ("crash", "reversed", "reset_to_track"):
                out.append({"type": "intervention", "reason": f"sim: {e.kind.replace('_', ' ')}"})
        return out


class ExpertPilot(Pilot):
    """Drives from the simulator's ground truth (not the camera): the teacher for recorded laps.

    With ``noise_std`` > 0 the car executes the expert's steering plus a slowly wandering
    perturbation (an Ornstein-Uhlenbeck process with correlation time ``noise_time_s``) while each
    decision carries the expert's own action as its ``label``: the recorded frames then show the car
    off the ideal line together with the way back (noise injection, as in DART).
    """

    name = "expert"
    needs_frame = False

    def __init__(
        self,
        body: SimCarBody,
        config: ExpertConfig | None = None,
        *,
        noise_std: float = 0.0,
        noise_time_s: float = 0.6,
        seed: int = 0,
        driver: ExpertDriver | None = None,
    ) -> None:
        self.body = body
        world = body.sim.world
        self.driver = driver or ExpertDriver(world.track, world.config.car, config)
        self.noise_std = noise_std
        self.noise_time_s = noise_time_s
        self._rng = np.random.default_rng(seed)
        self._noise = 0.0
        self._last_time: float | None = None

    def act(self, frame: Frame | None) -> Decision:
        truth = self.body.sim.ground_truth()
        steering, throttle = self.driver.act(truth.state)
        if self.noise_std <= 0:
            return Decision(steering, throttle, None, {"teacher": self.name})
        dt = 0.0 if self._last_time is None else max(0.0, truth.time - self._last_time)
        self._last_time = truth.time
        if truth.status.off_track:
            self._noise = 0.0  # let the recovery start clean
        elif dt > 0:
            theta = 1.0 / self.noise_time_s
            sigma = self.noise_std * math.sqrt(2 * theta)
            self._noise += -theta * self._noise * dt + sigma * math.sqrt(dt) * float(
                self._rng.standard_normal()
            )
        applied = max(-1.0, min(1.0, steering + self._noise))
        label = {"steering": max(-1.0, min(1.0, steering)), "throttle": max(-1.0, min(1.0, throttle))}
        return Decision(applied, throttle, None, {"teacher": self.name, "label": label})


def expert_pilot(body: Body, config: CarConfig) -> Pilot:
    """Pilot plugin ``expert`` (group ``paddock.pilots``): only a simulated body has an expert. Its
    steering noise comes from the ``[sim]`` section."""
    if not isinstance(body, SimCarBody):
        raise ValueError("the expert pilot needs a simulated body")
    sim = config.sim
    return ExpertPilot(body, noise_std=sim.expert_noise, noise_time_s=sim.expert_noise_time_s, seed=sim.seed)


class RaceLinePilot(ExpertPilot):
    """The expert following an optimised racing line at the line's speeds (the ``race-line`` pilot)."""

    name = "race-line"


def race_line_pilot(body: Body, config: CarConfig) -> Pilot:
    """Pilot plugin ``race-line`` (group ``paddock.pilots``): the line file in ``sim.race_line``,
    driven from the simulator's truth, with the ``[sim]`` section's steering noise."""
    if not isinstance(body, SimCarBody):
        raise ValueError("the race-line pilot needs a simulated body")
    sim = config.sim
    if sim.race_line is None:
        raise ValueError("the race-line pilot needs sim.race_line (a line.csv from `paddock race optimize`)")
    world = body.sim.world
    try:
        driver = RaceLineDriver.from_file(world.track, sim.race_line, world.config)
    except ValueError as exc:
        raise ConfigError(f"sim.race_line: {exc}") from None
    return RaceLinePilot(
        body, noise_std=sim.expert_noise, noise_time_s=sim.expert_noise_time_s, seed=sim.seed, driver=driver
    )


def build_sim_body(config: CarConfig) -> SimCarBody:
    """The simulated body the config's ``[sim]`` section (and camera size and rate) describes."""
    sim = config.sim
    if sim.track is None:
        raise ConfigError(
            "sim.track: required for a simulated car (a built-in name or a DeepRacer .npy file)"
        )
    try:
        track = get_track(sim.track)
    except TrackError as exc:
        raise ConfigError(f"sim.track: {exc}") from None
    cam = config.camera
    world = WorldConfig(
        camera=RenderConfig(width=cam.width, height=cam.height),
        randomization=Randomization(enabled=sim.randomize),
        obstacles=place_obstacles(
            track, sim.obstacles, ["center"] * len(sim.obstacles), kinds=sim.obstacle_kinds
        ),
    )
    body = SimBody(
        track,
        world,
        seed=sim.seed,
        clock=sim.clock,
        camera_fps=cam.fps,
        recover_after_s=sim.recover_after_s,
    )
    return SimCarBody(body, tick_s=1.0 / config.loop.hz if sim.clock == "lockstep" else None)
