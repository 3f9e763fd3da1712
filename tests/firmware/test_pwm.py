"""gpiozero mock pins show the pulse widths the calibration asks for."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from firmware.calibration import Calibration, SteeringCalibration, ThrottleCalibration
from firmware.hardware.calibrate import CalibrationAborted, CalibrationWizard
from firmware.hardware.pwm import ActuatorError, PwmActuators, make_pin_factory


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


def pulse_us(factory: MockFactory, pin: int, cal: Calibration) -> float:
    p = factory.pin(pin)
    assert p.frequency == cal.frequency_hz
    return float(p.state) / cal.frequency_hz * 1e6


CAL = Calibration(
    frequency_hz=50,
    steering=SteeringCalibration(pin=12, min_us=1100, center_us=1480, max_us=1920, trim=0.02, limit=0.8),
    throttle=ThrottleCalibration(
        pin=13, min_us=1000, center_us=1500, max_us=2000, limit_forward=0.5, limit_reverse=0.25
    ),
)


def test_pulse_widths_follow_the_calibration(factory: MockFactory) -> None:
    act = PwmActuators(CAL, pin_factory=factory)
    act.connect()
    try:
        # connect starts both at neutral (arms the ESC)
        assert pulse_us(factory, 12, CAL) == pytest.approx(1480 + 0.02 * 440)
        assert pulse_us(factory, 13, CAL) == pytest.approx(1500)
        cases = [(0.0, 0.0), (1.0, 1.0), (-1.0, -1.0), (0.5, 0.3), (-0.25, -0.1)]
        for s, t in cases:
            applied = act.apply(s, t)
            s_lim = max(-0.8, min(0.8, s))
            t_lim = max(-0.25, min(0.5, t))
            assert (applied.steering, applied.throttle) == pytest.approx(
                (s_lim, t_lim)
            )  # clipped action reported
            s_eff = s_lim + 0.02
            want_s = 1480 + s_eff * (440 if s_eff >= 0 else 380)
            want_t = 1500 + t_lim * 500
            assert pulse_us(factory, 12, CAL) == pytest.approx(want_s, abs=0.01)
            assert pulse_us(factory, 13, CAL) == pytest.approx(want_t, abs=0.01)
            assert act.last_pulses_us == pytest.approx((want_s, want_t))
        act.apply(float("nan"), float("nan"))
        assert pulse_us(factory, 13, CAL) == pytest.approx(1500)
    finally:
        act.apply(0.7, 0.5)
        act.disconnect()
    # disconnect leaves neutral before the pins close; the pin history shows it
    states = [s.state for s in factory.pin(13).states]
    assert states[-1] == 0 or states[-1] == pytest.approx(1500 * 50 / 1e6)
    assert pytest.approx(1500 * 50 / 1e6) in states[-3:]
    act.disconnect()  # twice is fine


def test_reverse_channel(factory: MockFactory) -> None:
    cal = CAL.model_copy(update={"throttle": CAL.throttle.model_copy(update={"reverse": True})})
    act = PwmActuators(cal, pin_factory=factory)
    with act:
        act.apply(0, 0.5)
        assert pulse_us(factory, 13, cal) == pytest.approx(1500 - 0.5 * 500)


def test_errors_are_clear(factory: MockFactory) -> None:
    act = PwmActuators(CAL, pin_factory=factory)
    with pytest.raises(ActuatorError, match="not connected"):
        act.apply(0, 0)
    with pytest.raises(ActuatorError, match="unknown pin factory"):
        make_pin_factory("nope")
    other = PwmActuators(CAL, pin_factory=factory)
    with act, pytest.raises(ActuatorError, match="cannot drive PWM on pins 12"):
        other.connect()  # pins are taken


def test_calibration_wizard_drives_the_pins_and_returns_the_result(
    factory: MockFactory, tmp_path: Path
) -> None:
    start = Calibration(steering=SteeringCalibration(pin=12), throttle=ThrottleCalibration(pin=13))
    act = PwmActuators(start, pin_factory=factory)
    seen: list[tuple[str, float, float]] = []
    answers = iter(
        [
            "+",
            "+",
            "",  # steering centre: 1500 → 1520
            "1150",
            "--",
            "",  # full left: 1150 → 1100
            "1900",
            "",  # full right
            "zzz",
            "",  # throttle neutral: junk is refused, 1500 kept
            "++",
            "",  # full forward: 2000 → 2050
            "-",
            "",  # full reverse 1000 → 990
            "0.7",
            "",
            "2",
            "0.3",  # limits: steering 0.7, forward kept, reverse: 2 refused, then 0.3
        ]
    )

    def ask(prompt: str) -> str:
        seen.append((prompt, pulse_us(factory, 12, start), pulse_us(factory, 13, start)))
        return next(answers)

    said: list[str] = []
    with act:
        cal = CalibrationWizard(act, ask=ask, say=said.append).run()
        # after the wizard, throttle is back at neutral
        assert pulse_us(factory, 13, start) == pytest.approx(1500)
    assert (cal.steering.min_us, cal.steering.center_us, cal.steering.max_us) == (1100, 1520, 1900)
    assert (cal.throttle.min_us, cal.throttle.center_us, cal.throttle.max_us) == (990, 1500, 2050)
    assert (cal.steering.limit, cal.throttle.limit_forward, cal.throttle.limit_reverse) == (0.7, 0.5, 0.3)
    # the pulse under adjustment was on the pin while the user looked at it
    assert seen[1][1] == pytest.approx(1510)  # after one "+"
    assert seen[4][1] == pytest.approx(1150)
    assert any(p.startswith("throttle.max_us") and t == pytest.approx(2050) for p, _, t in seen)
    assert any("not understood" in s for s in said)
    assert any("between 0 and 1" in s for s in said)


def test_wizard_abort_and_order_check(factory: MockFactory) -> None:
    act = PwmActuators(CAL, pin_factory=factory)
    answers = iter(
        ["1200", "", "1700", "", "1000", "", "q"]
    )  # full left above the centre: refused, then fixed
    said: list[str] = []
    with act, pytest.raises(CalibrationAborted):
        CalibrationWizard(act, ask=lambda _: next(answers), say=said.append).run()
    assert any("min_us < center_us < max_us" in s for s in said)
