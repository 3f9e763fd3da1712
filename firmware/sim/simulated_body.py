"""The simulated body for the car daemon: a camera and actuators sharing one world.

    body = SimBody("oval", seed=1)                       # clock="realtime" by default
    with body.camera, body.actuators:
        frame = body.camera.read_latest(max_age_ms=100)
        body.actuators.apply(steering=0.1, throttle=0.3)
        truth = body.ground_truth()                      # pose, speed, lap, progress, off_track…
        for event in body.poll_events(): ...             # lap, off_track, crash, …

Two clocks:

* ``"realtime"``: whenever the body is touched (a camera read, an actuator command, a ground-truth
  query), physics is advanced in fixed ``dt`` steps up to the current monotonic time, with the
  command that was in force. A 30 Hz control loop sees a car driving in real time.
* ``"lockstep"``: time stands still until the caller advances it (:meth:`SimBody.advance`), so a
  test is exactly repeatable. Frame timestamps then come from the simulated clock (:meth:`now_ns`).

All methods are thread-safe (one lock around the world): a camera thread may read frames while the
control loop applies actions. Event callbacks run in whichever thread advanced the world, with the
body's (re-entrant) lock held: keep them short.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from firmware.actuators import Actuators, Applied, clip_unit
from firmware.camera import Camera, CameraConfig, CameraError, Frame, StaleFrame
from firmware.sim.physics import CarState
from firmware.sim.track import Track
from firmware.sim.world import SimEvent, World, WorldConfig, WorldStatus

ClockMode = Literal["realtime", "lockstep"]


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What the simulator knows and a real car would not: for the expert pilot and telemetry."""

    time: float  # simulated seconds since the last reset
    state: CarState  # rear-axle pose, speed (m/s), wheel angle
    status: WorldStatus  # lap, progress, lap_times, off_track, crashed, …
    steering: float  # the command in force, [-1, 1]
    throttle: float


class SimBody:
    """One simulated car body: ``.camera`` (a :class:`firmware.camera.Camera`) and ``.actuators``
    (a :class:`firmware.actuators.Actuators`) on one :class:`World`.

    ``recover_after_s``: put the car back on the centre line after it has been off the track (or
    crashed) for this many simulated seconds; ``None`` leaves that to the caller
    (:meth:`reset_to_track`). ``max_catch_up_s``: in realtime mode, a longer gap since the last
    access is skipped rather than simulated (the world pauses).
    """

    def __init__(
        self,
        track: Track | str | Path,
        config: WorldConfig | None = None,
        seed: int | None = None,
        clock: ClockMode = "realtime",
        *,
        camera_fps: float = 30.0,
        recover_after_s: float | None = None,
        max_catch_up_s: float = 1.0,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if clock not in ("realtime", "lockstep"):
            raise ValueError(f"clock must be 'realtime' or 'lockstep', got {clock!r}")
        if recover_after_s is not None and not recover_after_s >= 0:
            raise ValueError("recover_after_s must be >= 0 or None")
        self.world = World(track, config, seed)
        self.clock: ClockMode = clock
        self.recover_after_s = recover_after_s
        self._max_catch_up_ns = int(max_catch_up_s * 1e9)
        self._monotonic_ns = monotonic_ns
        self._lock = threading.RLock()
        self._steering = 0.0
        self._throttle = 0.0
        self._events: deque[SimEvent] = deque(maxlen=10_000)
        self._listeners: list[Callable[[SimEvent], None]] = []
        self._trouble_since: float | None = None
        self._epoch_ns = monotonic_ns()  # monotonic time of simulated t = 0
        self._frame_cache: Frame | None = None
        self._frames = 0
        render = self.world.config.camera
        self.camera = SimCamera(self, CameraConfig(width=render.width, height=render.height, fps=camera_fps))
        self.actuators = SimActuators(self)

    # ---- time --------------------------------------------------------------------------------

    def now_ns(self) -> int:
        """The body's clock: monotonic time in realtime mode, simulated time in lockstep mode
        (both on the same scale as frame timestamps)."""
        if self.clock == "realtime":
            return self._monotonic_ns()
        with self._lock:
            return self._epoch_ns + round(self.world.time * 1e9)

    def _sync(self) -> None:
        """Realtime mode: advance the world to now. Call with the lock held."""
        if self.clock != "realtime":
            return
        now = self._monotonic_ns()
        behind = now - (self._epoch_ns + round(self.world.time * 1e9))
        if behind > self._max_catch_up_ns:
            # A long pause (the process was stopped, a debugger…): skip it instead of replaying it.
            self._epoch_ns += behind - self._max_catch_up_ns
            behind = self._max_catch_up_ns
        steps = int(behind // round(self.world.dt * 1e9))
        for _ in range(steps):
            self._step_once()

    def advance(self, seconds: float) -> WorldStatus:
        """Lockstep mode: advance simulated time by ``seconds`` (a whole number of ``dt`` steps,
        rounded) with the command in force."""
        if self.clock != "lockstep":
            raise RuntimeError(
                "advance() is for clock='lockstep'; a realtime body follows the monotonic clock"
            )
        if not seconds >= 0:
            raise ValueError(f"cannot advance by {seconds} s")
        with self._lock:
            for _ in range(round(seconds / self.world.dt)):
                self._step_once()
            return self.world.status

    def _step_once(self) -> None:
        status = self.world.step(self._steering, self._throttle)
        for event in status.events:
            self._emit(event)
        if self.recover_after_s is not None:
            if status.off_track or status.crashed:
                if self._trouble_since is None:
                    self._trouble_since = status.time
                elif status.time - self._trouble_since >= self.recover_after_s:
                    self._recover()
            else:
                self._trouble_since = None

    def _recover(self) -> WorldStatus:
        status = self.world.reset_to_track()
        self._trouble_since = None
        self._emit(SimEvent("reset_to_track", status.time, status.lap, status.progress))
        return status

    def _emit(self, event: SimEvent) -> None:
        self._events.append(event)
        for listener in list(self._listeners):
            listener(event)

    # ---- control, truth and events -----------------------------------------------------------

    def command(self, steering: float, throttle: float) -> Applied:
        """Set the command in force from now on (clipped to [-1, 1], NaN → 0)."""
        with self._lock:
            self._sync()
            self._steering, self._throttle = clip_unit(steering), clip_unit(throttle)
            return Applied(self._steering, self._throttle)

    def ground_truth(self) -> GroundTruth:
        with self._lock:
            self._sync()
            return GroundTruth(
                self.world.time, self.world.state, self.world.status, self._steering, self._throttle
            )

    def poll_events(self) -> list[SimEvent]:
        """Events since the last poll (oldest first)."""
        with self._lock:
            self._sync()
            events = list(self._events)
            self._events.clear()
            return events

    def on_event(self, callback: Callable[[SimEvent], None]) -> None:
        """Call ``callback(event)`` for every future event, in the thread that advanced the world."""
        with self._lock:
            self._listeners.append(callback)

    def reset_to_track(self) -> WorldStatus:
        """Put the car back on the centre line where it left it, stopped (after leaving the track)."""
        with self._lock:
            self._sync()
            return self._recover()

    def reset(self, seed: int | None = None, start_progress: float = 0.0) -> WorldStatus:
        """A new run from the start line: time, laps and events start over."""
        with self._lock:
            status = self.world.reset(seed, start_progress=start_progress)
            self._epoch_ns = self._monotonic_ns()
            self._events.clear()
            self._trouble_since = None
            self._frame_cache = None
            self._steering = self._throttle = 0.0
            return status

    # ---- frames ------------------------------------------------------------------------------

    def frame(self) -> Frame:
        """The camera frame of the world as it is now (rendered once per simulated instant)."""
        with self._lock:
            self._sync()
            t_ns = self._epoch_ns + round(self.world.time * 1e9)
            cached = self._frame_cache
            if cached is not None and cached.t_capture_ns == t_ns:
                return cached
            image = self.world.render()
            if image.shape[2] == 1:
                image = np.repeat(image, 3, axis=2)
            frame = Frame(image=image, t_capture_ns=t_ns, index=self._frames)
            self._frames += 1
            self._frame_cache = frame
            return frame


class SimCamera(Camera):
    """The rendered first-person camera of a :class:`SimBody` (RGB, the world's render size)."""

    kind = "sim"

    def __init__(self, body: SimBody, config: CameraConfig) -> None:
        super().__init__(config)
        self._body = body
        self._connected = False
        self._last_index = -1

    def connect(self) -> None:
        self._connected = True

    def _check(self) -> None:
        if not self._connected:
            raise CameraError("simulated camera is not connected (call connect())")

    def read(self) -> Frame:
        """Wait for the next frame slot (``1 / fps``) and return a new frame. In lockstep mode
        time does not pass by waiting: the frame of the current simulated instant is returned."""
        self._check()
        body = self._body
        if body.clock == "realtime":
            period_ns = round(1e9 / self.config.fps)
            now = body.now_ns()
            time.sleep(max(0.0, (period_ns - (now % period_ns)) / 1e9))
            frame = body.frame()
            while frame.index == self._last_index:  # the world has not stepped yet
                time.sleep(body.world.dt / 4)
                frame = body.frame()
        else:
            frame = body.frame()
        self._last_index = frame.index
        return frame

    def read_latest(self, max_age_ms: float) -> Frame:
        self._check()
        frame = self._body.frame()
        age_ms = (self._body.now_ns() - frame.t_capture_ns) / 1e6
        if age_ms > max_age_ms:
            raise StaleFrame(f"latest simulated frame is {age_ms:.1f} ms old (limit {max_age_ms:g} ms)")
        self._last_index = frame.index
        return frame

    def disconnect(self) -> None:
        self._connected = False


class SimActuators(Actuators):
    """Steering and throttle of a :class:`SimBody`; commands act after the car's latency and lag."""

    kind = "sim"

    def __init__(self, body: SimBody) -> None:
        self._body = body
        self._connected = False

    def connect(self) -> None:
        self._connected = True
        self._body.command(0.0, 0.0)

    def apply(self, steering: float, throttle: float) -> Applied:
        if not self._connected:
            raise RuntimeError("simulated actuators are not connected (call connect())")
        return self._body.command(steering, throttle)

    def disconnect(self) -> None:
        if self._connected:
            self._body.command(0.0, 0.0)
        self._connected = False
