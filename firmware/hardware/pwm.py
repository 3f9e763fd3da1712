"""Steering servo and ESC driven by gpiozero PWM outputs, with pulse widths from a calibration.

On a Raspberry Pi, gpiozero picks its pin driver (lgpio, RPi.GPIO, pigpio); pigpio gives
hardware-timed pulses, which servos prefer (``pin_factory = "pigpio"`` in the car config). Tests
pass ``MockFactory(pin_class=MockPWMPin)`` and read the duty cycles back from the mock pins.
"""

import threading
from typing import Any

from firmware.actuators import Actuators, Applied
from firmware.calibration import Calibration
from schemas.release import install_hint

PIN_FACTORIES = ("lgpio", "rpigpio", "pigpio", "native", "mock")


class ActuatorError(RuntimeError):
    """The outputs cannot be driven (no GPIO, pin busy, library missing)."""


def make_pin_factory(name: str) -> Any:
    """A gpiozero pin factory by name, with an install hint when its library is missing."""
    modules = {
        "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory", "python3-lgpio (or pip install lgpio)"),
        "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory", "python3-rpi.gpio"),
        "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory", "pigpio (and run the pigpiod daemon)"),
        "native": ("gpiozero.pins.native", "NativeFactory", "nothing (built into gpiozero)"),
    }
    if name == "mock":  # no hardware: try a calibration or a config on any computer
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    if name not in modules:
        raise ActuatorError(f"unknown pin factory {name!r}; expected one of {', '.join(PIN_FACTORIES)}")
    module, cls, hint = modules[name]
    import importlib

    try:
        factory_cls = getattr(importlib.import_module(module), cls)
        return factory_cls()
    except (ImportError, OSError, RuntimeError) as exc:
        raise ActuatorError(f"gpiozero pin factory {name!r} is unavailable ({exc}); install {hint}") from exc


class PwmActuators(Actuators):
    """A steering servo and an ESC on two PWM pins.

    ``apply`` clips each command to the calibration's limits, sets the pulse and returns the clipped
    command (what the car reports and records). ``connect`` starts both at neutral, which also arms
    most ESCs.
    """

    kind = "pwm"

    def __init__(self, calibration: Calibration, pin_factory: Any = None) -> None:
        self.calibration = calibration
        self._pin_factory = pin_factory
        self._steering: Any = None
        self._throttle: Any = None
        self._lock = threading.Lock()
        self.last_pulses_us: tuple[float, float] | None = None

    def connect(self) -> None:
        try:
            from gpiozero import PWMOutputDevice
        except ImportError as exc:  # pragma: no cover - gpiozero is a car dependency
            raise ActuatorError(f"PWM actuators need gpiozero: {install_hint('car')}") from exc
        cal = self.calibration
        factory = make_pin_factory(self._pin_factory) if isinstance(self._pin_factory, str) else None
        factory = factory or self._pin_factory
        with self._lock:
            if self._steering is not None:
                return
            try:
                self._steering = PWMOutputDevice(
                    cal.steering.pin,
                    frequency=cal.frequency_hz,
                    initial_value=cal.duty(cal.steering.pulse_us(0.0)),
                    pin_factory=factory,
                )
                self._throttle = PWMOutputDevice(
                    cal.throttle.pin,
                    frequency=cal.frequency_hz,
                    initial_value=cal.duty(cal.throttle.pulse_us(0.0)),
                    pin_factory=factory,
                )
            except Exception as exc:
                self._close_devices()
                raise ActuatorError(
                    f"cannot drive PWM on pins {cal.steering.pin} (steering) and {cal.throttle.pin} "
                    f"(throttle): {exc}"
                ) from exc
            self.last_pulses_us = (cal.steering.pulse_us(0.0), cal.throttle.pulse_us(0.0))

    def apply(self, steering: float, throttle: float) -> Applied:
        cal = self.calibration
        s = cal.steering.limited(steering)
        t = cal.throttle.limited(throttle)
        s_us, t_us = cal.steering.pulse_us(s), cal.throttle.pulse_us(t)
        with self._lock:
            if self._steering is None:
                raise ActuatorError("actuators are not connected")
            self._steering.value = cal.duty(s_us)
            self._throttle.value = cal.duty(t_us)
            self.last_pulses_us = (s_us, t_us)
        return Applied(s, t)

    def disconnect(self) -> None:
        with self._lock:
            if self._steering is not None:
                cal = self.calibration
                # Neutral first, so the car does not keep its last command while the pins close.
                try:
                    self._steering.value = cal.duty(cal.steering.pulse_us(0.0))
                    self._throttle.value = cal.duty(cal.throttle.pulse_us(0.0))
                except Exception:
                    pass
            self._close_devices()

    def _close_devices(self) -> None:
        for dev in (self._steering, self._throttle):
            if dev is not None:
                try:
                    dev.close()
                except Exception:
                    pass
        self._steering = self._throttle = None

    def set_pulse_us(self, channel: str, pulse_us: float) -> None:
        """Drive a raw pulse on one channel (used only while calibrating)."""
        with self._lock:
            dev = {"steering": self._steering, "throttle": self._throttle}[channel]
            if dev is None:
                raise ActuatorError("actuators are not connected")
            dev.value = self.calibration.duty(pulse_us)
