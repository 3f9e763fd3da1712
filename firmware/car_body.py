"""A car body: camera + actuators (+ optional sensors), and for simulated bodies what the
simulator knows (speed, lap, progress, off-track) and its events (laps, off-track).

The control loop calls :meth:`Body.state` and :meth:`Body.poll_events` once per tick, on the
control thread, so both must be cheap and never block.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from firmware.actuators import Actuators
from firmware.camera import Camera
from firmware.sensors import SensorSuite


@dataclass(slots=True)
class BodyState:
    """What the body knows this tick beyond the image. ``extra`` goes into recorded frames."""

    speed: float | None = None
    lap: int | None = None
    progress: float | None = None
    off_track: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LidarScan:
    """One planar lidar scan: when it was taken (the body's clock, as frame timestamps) and the
    range of every beam in metres, first beam on the right, spread over ``fov_deg``."""

    t_ns: int
    ranges: Sequence[float]
    min_range: float
    max_range: float
    fov_deg: float


# A scan of one instant whose ranges may be worked out later, off the control thread.
PendingScan = Callable[[], LidarScan]


class Body:
    kind = "hardware"
    # True where time stands still between control ticks (a lockstep simulator): work handed off
    # the control thread is then waited for at the next tick, so a run stays repeatable.
    lockstep = False

    def __init__(self, camera: Camera, actuators: Actuators, sensors: SensorSuite | None = None) -> None:
        self.camera = camera
        self.actuators = actuators
        self.sensors = sensors

    @property
    def capabilities(self) -> list[str]:
        caps = [f"camera:{self.camera.kind}", f"actuators:{self.actuators.kind}"]
        if self.sensors is not None:
            caps += [f"sensor:{s.name}" for s in self.sensors.sensors]
        return caps

    def connect(self) -> None:
        """Start at neutral, then start the camera; undo everything if either fails."""
        self.actuators.connect()
        try:
            self.camera.connect()
        except BaseException:
            self.actuators.disconnect()
            raise

    def disconnect(self) -> None:
        try:
            self.actuators.disconnect()
        finally:
            try:
                self.camera.disconnect()
            finally:
                if self.sensors is not None:
                    self.sensors.close()

    def before_tick(self) -> None:
        """Called at the start of every control tick (a lockstep simulator advances here)."""

    def state(self) -> BodyState | None:
        """Ground truth or measurements for this tick; None when the body knows nothing more."""
        return None

    def range_ahead(self, half_angle_deg: float = 10.0) -> float | None:
        """Metres from the car's nose to the nearest thing within ``half_angle_deg`` of straight
        ahead, where the body has a range sensor (a lidar); None where it has none."""
        return None

    def lidar_scan(self) -> PendingScan | None:
        """The lidar's scan of this instant, where the body has a lidar (None where it has none).

        Called on the control thread, so it only notes what the scan needs (a driver's latest
        scan, or a simulator's pose); calling the result gives the :class:`LidarScan`, on whatever
        thread wants it (the recorder's writer)."""
        return None

    def poll_events(self) -> list[dict[str, Any]]:
        """Events since the last call, as ``{"type": ..., ...}`` dicts (``schemas.messages`` events)."""
        return []
