"""The car daemon on a simulated body, and the ``expert`` pilot that drives from the sim's truth.

:class:`SimCarBody` adapts :class:`firmware.sim.SimBody` to the daemon's body: camera and
actuators as they are, plus what the simulator knows for telemetry and recorded frames (speed,
lap, progress, off-track, pose) and its events (laps, off-track, crashes, recoveries). With the
``lockstep`` clock each control tick advances the world by exactly one tick period, so a run is
repeatable whatever the machine's load; ``realtime`` follows the wall clock like a real car.

:class:`ExpertPilot` is an autopilot that reads the ground truth and asks the simulator's expert
driver (pure pursuit with a speed profile) what to do; the demo records its training laps with it.
"""

import logging
from typing import Any

from edge.config import CarConfig, ConfigError
from edge.pilots import Decision, Pilot
from firmware.body import Body, BodyState
from firmware.camera import Frame
from firmware.sim import ExpertConfig, ExpertDriver, Randomization, RenderConfig, SimBody, WorldConfig
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

    @property
    def capabilities(self) -> list[str]:
        return [
            *super().capabilities,
            f"sim:track:{self.sim.world.track.name}",
            f"sim:clock:{self.sim.clock}",
        ]

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
    """Drives from the simulator's ground truth (not the camera): the teacher for recorded laps."""

    name = "expert"
    needs_frame = False

    def __init__(self, body: SimCarBody, config: ExpertConfig | None = None) -> None:
        self.body = body
        world = body.sim.world
        self.driver = ExpertDriver(world.track, world.config.car, config)

    def act(self, frame: Frame | None) -> Decision:
        truth = self.body.sim.ground_truth()
        steering, throttle = self.driver.act(truth.state)
        return Decision(steering, throttle, None, {"teacher": "expert"})


def expert_pilot(body: Body) -> Pilot:
    """Pilot factory (entry point ``paddock.pilots: expert``): only a simulated body has an expert."""
    if not isinstance(body, SimCarBody):
        raise ValueError("the expert pilot needs a simulated body")
    return ExpertPilot(body)


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
