"""Model health on the car: interventions, off-track moments, lap times and confidence."""

from collections.abc import Iterator

import pytest

from edge.config import LoopSection
from edge.loop import ControlLoop
from edge.pilots import Decision, Pilot
from firmware.camera import Frame
from firmware.car_body import Body
from tests.edge.bodies import bench_body


class SurePilot(Pilot):
    name = "sure"

    def act(self, frame: Frame | None) -> Decision:
        return Decision(0.1, 0.2, 0.5, confidence=0.8)


@pytest.fixture
def body() -> Iterator[Body]:
    b, _ = bench_body()
    b.connect()
    b.camera.read()
    yield b
    b.disconnect()


def test_takeover_deadman_and_events_are_counted(body: Body) -> None:
    loop = ControlLoop(body, LoopSection(hz=100, start_mode="autopilot", autopilot="sure", deadman_ms=50))
    loop.install_pilot("sure", SurePilot())
    loop.tick()
    loop.set_mode("manual")  # a human takes over
    loop.drive(0.0, 0.5)
    loop.tick()
    assert loop.health.interventions == 1
    loop._manual = (0.0, 0.5, 0)  # the last drive command is long past: the deadman trips
    loop.tick()
    assert loop.health.interventions == 2
    loop._emit({"type": "off_track", "progress": 10.0})
    loop._emit({"type": "lap", "lap": 1, "lap_time_s": 12.5})
    assert loop.health.off_track == 1 and loop.health.last_lap_s == 12.5


def test_confidence_is_the_mean_over_the_window(body: Body) -> None:
    loop = ControlLoop(body, LoopSection(hz=100, start_mode="autopilot", autopilot="sure"))
    loop.install_pilot("sure", SurePilot())
    for _ in range(3):
        loop.tick()
    assert loop.take_stats().confidence == pytest.approx(0.8)
    assert loop.take_stats().confidence is None  # a new window
