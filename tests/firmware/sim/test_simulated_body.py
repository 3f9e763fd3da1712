"""The simulated body: camera and actuators on one world, both clocks, events, thread safety."""

import threading
import time

import numpy as np
import pytest

from firmware.actuators import Actuators
from firmware.camera import Camera, CameraError, StaleFrame
from firmware.sim.expert import ExpertDriver
from firmware.sim.simulated_body import SimBody
from firmware.sim.world import SimEvent


class FakeClock:
    """Monotonic nanoseconds moved by hand, so realtime behaviour is tested exactly."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def sleep(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)


def test_body_parts_implement_the_firmware_interfaces() -> None:
    body = SimBody("oval", clock="lockstep")
    assert isinstance(body.camera, Camera) and isinstance(body.actuators, Actuators)
    assert (body.camera.config.width, body.camera.config.height) == (160, 120)
    with pytest.raises(CameraError, match="not connected"):
        body.camera.read()
    with pytest.raises(RuntimeError, match="not connected"):
        body.actuators.apply(0.0, 0.5)


def test_lockstep_is_exactly_repeatable() -> None:
    def run() -> list[np.ndarray]:
        body = SimBody("technical", seed=4, clock="lockstep")
        frames = []
        with body.camera, body.actuators:
            for i in range(20):
                body.actuators.apply(0.3 * np.sin(i / 3), 0.4)
                body.advance(1 / 30)
                frames.append(body.camera.read().image)
        return frames

    a, b = run(), run()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[-1])  # the car moved


def test_lockstep_time_frames_and_staleness() -> None:
    body = SimBody("oval", clock="lockstep")
    with body.camera, body.actuators:
        first = body.camera.read_latest(max_age_ms=1.0)
        assert body.camera.read_latest(max_age_ms=1.0).index == first.index  # same instant, same frame
        applied = body.actuators.apply(2.0, float("nan"))
        assert (applied.steering, applied.throttle) == (1.0, 0.0)
        body.advance(0.5)
        frame = body.camera.read_latest(max_age_ms=1.0)
        assert frame.index == first.index + 1
        assert frame.t_capture_ns - first.t_capture_ns == 500_000_000
        assert body.now_ns() == frame.t_capture_ns
        assert body.ground_truth().time == pytest.approx(0.5)
    with pytest.raises(RuntimeError, match="lockstep"):
        SimBody("oval").advance(1.0)


def test_realtime_follows_the_monotonic_clock() -> None:
    clock = FakeClock()
    body = SimBody("oval", clock="realtime", monotonic_ns=clock)
    with body.camera, body.actuators:
        body.actuators.apply(0.0, 0.3)
        clock.sleep(1.0)
        truth = body.ground_truth()
        assert truth.time == pytest.approx(1.0)
        assert truth.state.speed > 0.5 and truth.state.x > -0.14
        assert (truth.steering, truth.throttle) == (0.0, 0.3)
        clock.sleep(0.02)  # less than one 1/30 s step: the frame is 20 ms old
        frame = body.camera.read_latest(max_age_ms=100)
        assert (body.now_ns() - frame.t_capture_ns) / 1e6 == pytest.approx(20.0, abs=0.01)
        with pytest.raises(StaleFrame):
            body.camera.read_latest(max_age_ms=10)
        # A long stall is skipped rather than replayed.
        clock.sleep(30.0)
        assert body.ground_truth().time == pytest.approx(2.0, abs=0.05)


def test_realtime_with_the_real_clock_and_threads() -> None:
    started = time.monotonic()
    body = SimBody("s-curve", clock="realtime")
    created = time.monotonic()
    errors: list[BaseException] = []
    frames: list[int] = []
    stop = threading.Event()

    def camera_thread() -> None:
        try:
            while not stop.is_set():
                frames.append(body.camera.read().index)
        except BaseException as exc:
            errors.append(exc)

    with body.camera, body.actuators:
        reader = threading.Thread(target=camera_thread)
        reader.start()
        expert = ExpertDriver(body.world.track, body.world.config.car)
        t_end = time.monotonic() + 0.6
        while time.monotonic() < t_end:
            body.actuators.apply(*expert.act(body.ground_truth().state))
            time.sleep(1 / 60)
        stop.set()
        reader.join(timeout=5)
    assert not errors
    assert len(frames) >= 8 and frames == sorted(set(frames))  # new frames, in order
    truth = body.ground_truth()
    elapsed = time.monotonic()
    # Simulated time is wall time since the body started its clock (while it was being made), to
    # within one step (1/30 s).
    assert elapsed - created - 1 / 30 - 0.01 <= truth.time <= elapsed - started
    assert truth.status.progress > 2 and truth.status.all_wheels_on_track


def test_lap_events_by_poll_and_callback() -> None:
    body = SimBody("oval", clock="lockstep")
    seen: list[SimEvent] = []
    body.on_event(seen.append)
    expert = ExpertDriver(body.world.track, body.world.config.car)
    with body.actuators:
        while body.ground_truth().status.lap < 1:
            body.actuators.apply(*expert.act(body.ground_truth().state))
            body.advance(1 / 30)
    events = body.poll_events()
    assert [e.kind for e in events] == ["lap"] and events == seen
    assert events[0].lap_time == pytest.approx(body.ground_truth().status.lap_times[0])
    assert body.poll_events() == []


def test_off_track_recovery_manual_and_automatic() -> None:
    body = SimBody("oval", clock="lockstep")
    with body.actuators:
        body.actuators.apply(0.0, 0.5)  # straight on into the first bend
        while not body.ground_truth().status.off_track:
            body.advance(1 / 30)
        assert [e.kind for e in body.poll_events()] == ["off_track"]
        status = body.reset_to_track()
        assert status.all_wheels_on_track and status.speed == 0.0
        assert [e.kind for e in body.poll_events()] == ["reset_to_track"]

    auto = SimBody("oval", clock="lockstep", recover_after_s=0.5)
    with auto.actuators:
        auto.actuators.apply(0.0, 0.5)
        for _ in range(300):
            auto.advance(1 / 30)
            if any(e.kind == "reset_to_track" for e in auto.poll_events()):
                break
        else:
            pytest.fail("the car was never put back on the track")
        assert auto.ground_truth().status.all_wheels_on_track


def test_reset_starts_over() -> None:
    body = SimBody("oval", clock="lockstep")
    with body.actuators:
        body.actuators.apply(0.0, 0.4)
        body.advance(1.0)
    status = body.reset(seed=2, start_progress=50.0)
    assert status.time == 0.0 and status.progress == 0.0
    assert body.ground_truth().status.s == pytest.approx(0.5 * body.world.track.length, abs=1e-6)
    assert body.poll_events() == []
