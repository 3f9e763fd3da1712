"""Bench bodies for edge tests: the test-pattern camera and gpiozero PWM outputs on mock pins."""

from gpiozero.pins.mock import MockFactory, MockPWMPin

from firmware.calibration import Calibration, SteeringCalibration, ThrottleCalibration
from firmware.camera import CameraConfig
from firmware.car_body import Body
from firmware.hardware.pwm import PwmActuators
from firmware.hardware.test_pattern import TestPatternCamera

CALIBRATION = Calibration(
    steering=SteeringCalibration(pin=12, limit=0.9),
    throttle=ThrottleCalibration(pin=13, limit_forward=0.6, limit_reverse=0.3),
)


def bench_body(fps: float = 60.0, width: int = 160, height: int = 120) -> tuple[Body, MockFactory]:
    factory = MockFactory(pin_class=MockPWMPin)
    actuators = PwmActuators(CALIBRATION, pin_factory=factory)
    camera = TestPatternCamera(CameraConfig(width=width, height=height, fps=fps))
    return Body(camera, actuators), factory


def throttle_pulse_us(factory: MockFactory) -> float:
    return float(factory.pin(13).state) / CALIBRATION.frequency_hz * 1e6
