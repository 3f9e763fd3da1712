"""What the car says about itself: telemetry, its birth/death status and a status dictionary.

Every function reads the running components (:class:`Parts`) and builds a message; nothing here
changes state except the telemetry sequence number.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import schemas
from edge.loop import ControlLoop
from edge.mqtt import MqttLink
from edge.recorder import Recorder
from edge.spool import ForwardSpool
from firmware.car_body import Body
from firmware.sensors import SensorReading, SensorSuite
from schemas.input_stats import FeatureStatsAccumulator, InputStats, InputStatsAccumulator
from schemas.messages import CameraInfo, CarStatus, Telemetry


@dataclass(frozen=True, slots=True)
class Parts:
    """The components of a started car, as the snapshots read them."""

    car: str
    body: Body
    loop: ControlLoop
    recorder: Recorder
    spool: ForwardSpool
    link: MqttLink


def car_status(
    state: Any, bdseq: int, body: Body | None, mode: Any, model: str | None, pilots: list[str]
) -> CarStatus:
    """The retained birth (``online``) or last-will (``offline``) message."""
    cam = body.camera if body is not None else None
    return CarStatus(
        state=state,
        bdseq=bdseq,
        ts=time.time(),
        sw_version=schemas.__version__,
        mode=mode,
        model=model,
        capabilities=[
            *(body.capabilities if body is not None else []),
            "record",
            "hot-swap",
            *[f"pilot:{p}" for p in pilots],
        ],
        camera=CameraInfo(width=cam.config.width, height=cam.config.height, fps=cam.config.fps, kind=cam.kind)
        if cam is not None
        else None,
    )


class SensorPoller:
    """Reads the sensors at the telemetry rate; the IMU's readings also go into recorded frames."""

    def __init__(self) -> None:
        self.reading = SensorReading()

    async def run(self, sensors: SensorSuite, recorder: Recorder, period_s: Callable[[], float]) -> None:
        while True:
            self.reading = await asyncio.to_thread(sensors.read)
            imu = self.reading.imu()
            recorder.extra = {"imu": imu} if imu else {}
            await asyncio.sleep(period_s())


class TelemetryBuilder:
    """Numbers telemetry messages; each one reports the loop statistics since the last.

    Input statistics: each message samples the latest camera frame (at the telemetry rate, on
    the daemon's thread, never in the control loop) and every ``stats_every``-th message carries
    the summary of the frames sampled since the previous one. Where the model that decided on that
    frame gave its feature values (its card's ``features``), they are summarised with it; a summary
    whose frames were not all the model's carries no features (they would describe fewer frames).
    """

    def __init__(self, stats_every: int = 10) -> None:
        self._seq = 0
        self.stats_every = max(1, stats_every)
        self._input = InputStatsAccumulator()
        self._features = FeatureStatsAccumulator()
        self._sampled_frame = -1

    def _sample_input(self, parts: Parts) -> None:
        last = parts.loop.last
        frame = last.frame if last is not None else None
        if frame is not None and frame.index != self._sampled_frame:
            self._sampled_frame = frame.index
            self._input.add(frame.image)
            features = last.decision.features if last is not None and last.decision is not None else None
            if features is not None:
                self._features.add(features)

    def _take_input_stats(self) -> InputStats | None:
        stats, features = self._input.stats(), self._features.stats()
        if stats is not None and features is not None and features.samples == stats.frames:
            stats = stats.model_copy(update={"features": features})
        self._input.reset()
        self._features.reset()
        return stats

    def build(self, parts: Parts, loop_hz: float, model: str | None, sensors: SensorReading) -> Telemetry:
        stats = parts.loop.take_stats()
        last = parts.loop.last
        body = last.body if last is not None else None
        health = parts.loop.health
        self._sample_input(parts)
        input_stats = None
        if self._seq % self.stats_every == self.stats_every - 1:
            input_stats = self._take_input_stats()
        self._seq += 1
        return Telemetry(
            seq=self._seq - 1,
            ts=time.time(),
            mode=last.mode if last is not None else parts.loop.mode,
            session=parts.recorder.session,
            model=(last.pilot if last is not None and last.pilot else model),
            recording=parts.recorder.recording,
            steering=last.steering if last is not None else 0.0,
            throttle=last.throttle if last is not None else 0.0,
            speed=body.speed if body is not None else None,
            loop_hz=loop_hz,
            loop_period_ms=_r(stats.period_ms),
            loop_late_p50_ms=_r(stats.timing.late_p50_ms),
            loop_late_p99_ms=_r(stats.timing.late_p99_ms),
            missed_ticks=stats.timing.missed,
            inference_ms=_r(stats.inference_ms),
            battery_v=sensors.battery_v,
            cpu_temp_c=sensors.cpu_temp_c,
            lap=body.lap if body is not None else None,
            progress=body.progress if body is not None else None,
            off_track=body.off_track if body is not None else None,
            frames_dropped=frames_dropped(parts.recorder),
            spool_frames=parts.spool.pending_records,
            confidence=_r(stats.confidence),
            interventions=health.interventions,
            off_track_count=health.off_track,
            lap_time_s=health.last_lap_s,
            input_stats=input_stats,
        )


def status(parts: Parts, model: str | None, preview_dropped: int, events_dropped: int) -> dict[str, Any]:
    """A snapshot for programs that embed the daemon (and for tests)."""
    loop = parts.loop
    last = loop.last
    return {
        "car": parts.car,
        "connected": parts.link.connected.is_set(),
        "bdseq": parts.link.bdseq,
        "mode": loop.mode,
        "estop": loop.estop,
        "autopilot": loop.autopilot,
        "model": model,
        "recording": parts.recorder.session,
        "spool_frames": parts.spool.pending_records,
        "frames_dropped": frames_dropped(parts.recorder),
        "lidar_scans": parts.recorder.scans,
        "preview_dropped": preview_dropped,
        "events_dropped": events_dropped,
        "ticks": loop.timer.ticks,
        "missed_ticks": loop.timer.missed,
        "steering": last.steering if last else 0.0,
        "throttle": last.throttle if last else 0.0,
    }


def frames_dropped(recorder: Recorder) -> int:
    return recorder.queue.dropped + recorder.dropped_full


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
