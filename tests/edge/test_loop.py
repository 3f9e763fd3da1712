import time
from collections.abc import Iterator
from typing import Any

import pytest

from edge.config import LoopSection
from edge.loop import ControlLoop, TickResult
from edge.pilots import Decision, ModelPilot, Pilot
from edge.runtimes.onnx import OnnxRuntime
from firmware.camera import Frame
from firmware.car_body import Body
from tests.edge.bodies import bench_body, throttle_pulse_us
from tests.edge.modelkit import manifest, onnx_model


class Sink:
    def __init__(self) -> None:
        self.ticks: list[TickResult] = []
        self.events: list[dict[str, Any]] = []

    def on_tick(self, result: TickResult) -> None:
        self.ticks.append(result)

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class ConstantPilot(Pilot):
    def __init__(self, steering: float, throttle: float | None, name: str = "const") -> None:
        self.name = name
        self.value = (steering, throttle)
        self.closed = False

    def act(self, frame: Frame | None) -> Decision:
        return Decision(self.value[0], self.value[1], 0.1)

    def close(self) -> None:
        self.closed = True


class FailingPilot(Pilot):
    name = "broken"

    def act(self, frame: Frame | None) -> Decision:
        raise RuntimeError("boom")


@pytest.fixture
def body() -> Iterator[tuple[Body, Any]]:
    b, factory = bench_body()
    b.connect()
    b.camera.read()
    yield b, factory
    b.disconnect()


def make(body: Body, **loop: Any) -> tuple[ControlLoop, Sink]:
    sink = Sink()
    return ControlLoop(body, LoopSection(**{"hz": 100, **loop}), sink), sink


def test_manual_mode_reports_the_clipped_action_and_the_deadman_stops(body: tuple[Body, Any]) -> None:
    b, factory = body
    loop, sink = make(b, deadman_ms=100)
    loop.drive(-1.5, 0.9)
    r = loop.tick()
    assert r.mode == "manual" and r.reason is None
    assert (r.steering, r.throttle) == (-0.9, 0.6)  # clip_unit, then the calibration's limits
    assert throttle_pulse_us(factory) == pytest.approx(1500 + 0.6 * 500)
    time.sleep(0.15)
    r = loop.tick()
    assert r.throttle == 0.0 and r.reason == "deadman"
    assert throttle_pulse_us(factory) == pytest.approx(1500)
    assert sink.events == [{"type": "intervention", "reason": "deadman: no drive command"}]
    loop.tick()
    assert len(sink.events) == 1  # reported once per trip
    loop.drive(0.0, 0.2)
    assert loop.tick().throttle == pytest.approx(0.2)


def test_estop_overrides_every_mode_and_release_needs_a_new_mode(body: tuple[Body, Any]) -> None:
    b, factory = body
    loop, _ = make(b, start_mode="autopilot", autopilot="const")
    loop.install_pilot("const", ConstantPilot(0.2, 0.5))
    assert loop.tick().throttle == 0.5
    loop.set_estop(True, "marshal")
    r = loop.tick()
    assert (r.mode, r.estop, r.throttle, r.steering, r.reason) == ("stop", True, 0.0, 0.0, "estop")
    assert throttle_pulse_us(factory) == pytest.approx(1500)
    loop.drive(0.5, 0.5)
    loop.set_mode("manual")
    assert loop.tick().throttle == 0.0
    loop.set_estop(False)
    assert loop.mode == "stop"  # never resumes by itself
    assert loop.tick().reason == "stop"
    loop.set_mode("autopilot")
    assert loop.tick().throttle == 0.5


def test_autopilot_holds_without_a_pilot_or_a_fresh_frame(body: tuple[Body, Any]) -> None:
    b, _ = body
    loop, sink = make(b, start_mode="autopilot", max_frame_age_ms=30)
    r = loop.tick()
    assert (r.reason, r.throttle) == ("no_pilot", 0.0)
    assert sink.events[-1]["reason"] == "autopilot held: no_pilot"
    loop.install_pilot("model", ConstantPilot(0.1, None, "m"))
    loop.set_tuning(autopilot_throttle=0.5, max_throttle=0.8)
    r = loop.tick()
    assert r.throttle == pytest.approx(0.4) and r.pilot == "m"  # configured throttle, scaled
    b.camera.disconnect()
    r = loop.tick()
    assert (r.reason, r.throttle, r.frame) == ("stale_frame", 0.0, None)


def test_a_failing_pilot_stops_the_car_and_is_reported_once(body: tuple[Body, Any]) -> None:
    b, _ = body
    loop, sink = make(b, start_mode="autopilot")
    loop.install_pilot("model", FailingPilot())
    for _ in range(5):
        r = loop.tick()
        assert (r.reason, r.throttle) == ("pilot_error", 0.0)
    errors = [e for e in sink.events if e["type"] == "error"]
    assert len(errors) == 1 and "boom" in errors[0]["message"]


def test_pilot_swap_happens_between_two_ticks(body: tuple[Body, Any]) -> None:
    b, _ = body
    replaced: list[Pilot] = []
    loop = ControlLoop(b, LoopSection(hz=100, start_mode="autopilot"), Sink(), on_replaced=replaced.append)
    old = ConstantPilot(-0.3, 0.2)
    loop.install_pilot("model", old)
    assert loop.tick(1).steering == pytest.approx(-0.3)
    data = onnx_model(steering=0.45, throttle=0.25)
    m = manifest(data)
    new = ModelPilot(m, OnnxRuntime().load(data, m.card))
    installed: list[tuple[int, int]] = []
    loop.install_pilot("model", new, lambda tick, t_ns: installed.append((tick, t_ns)))
    assert loop.pilot("model") is old  # not before the next tick
    r = loop.tick(2)
    assert installed and installed[0][0] == 2 and installed[0][1] == r.t_ns
    assert (r.steering, r.throttle, r.pilot) == (pytest.approx(0.45), pytest.approx(0.25), "pilot:1")
    assert replaced == [old]


def test_thread_keeps_the_rate_and_estop_takes_effect_within_one_tick(body: tuple[Body, Any]) -> None:
    b, factory = body
    loop, sink = make(b, hz=50, start_mode="autopilot", autopilot="const")
    loop.install_pilot("const", ConstantPilot(0.0, 0.5))
    loop.start()
    try:
        time.sleep(0.5)
        t_set = time.monotonic_ns()
        loop.set_estop(True)
        time.sleep(0.1)
    finally:
        loop.stop()
    assert not loop.running
    before = [r for r in sink.ticks if r.t_ns < t_set]
    after = [r for r in sink.ticks if r.t_ns > t_set]
    assert before and all(r.throttle == 0.5 for r in before[2:])
    assert after and all(r.throttle == 0.0 and r.estop for r in after)  # the very next tick
    stats = loop.take_stats()
    assert 20 <= stats.timing.ticks <= 35
    assert stats.period_ms == pytest.approx(20, rel=0.25)
    assert throttle_pulse_us(factory) == pytest.approx(1500)  # stop() leaves neutral
