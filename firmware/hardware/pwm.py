"""Steering servo and ESC driven by gpiozero PWM outputs, with pulse widths from a calibration.

On a Raspberry Pi, gpiozero picks its pin driver (lgpio, RPi.GPIO, pigpio); pigpio gives
hardware-timed pulses, which servos prefer (``pin_factory = "pigpio"`` in the car config). Tests
pass ``MockFactory(pin_class=MockPWMPin)`` and read the duty cycles back from the mock pins.
"""

from typing import Any

from firmware.calibration import Calibration
from firmware.hardware.pulse import ActuatorError, PulseActuators
from schemas.release import install_hint

__all__ = ["PIN_FACTORIES", "ActuatorError", "PwmActuators", "make_pin_factory"]

PIN_FACTORIES = ("lgpio", "rpigpio", "pigpio", "native", "mock")


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


class PwmActuators(PulseActuators):
    """A steering servo and an ESC on two GPIO PWM pins (``calibration.steering.pin`` and
    ``calibration.throttle.pin``). ``connect`` starts both at neutral, which also arms most ESCs;
    clipping and pulse widths are :class:`~firmware.hardware.pulse.PulseActuators`'."""

    kind = "pwm"

    def __init__(self, calibration: Calibration, pin_factory: Any = None) -> None:
        super().__init__(calibration)
        self._pin_factory = pin_factory
        self._devices: dict[str, Any] = {}

    def connect(self) -> None:
        try:
            from gpiozero import PWMOutputDevice
        except ImportError as exc:  # pragma: no cover - gpiozero is a car dependency
            raise ActuatorError(f"PWM actuators need gpiozero: {install_hint('car')}") from exc
        cal = self.calibration
        factory = make_pin_factory(self._pin_factory) if isinstance(self._pin_factory, str) else None
        factory = factory or self._pin_factory
        neutral = self.neutral_us()
        with self._lock:
            if self._devices:
                return
            try:
                for channel, pin, pulse_us in (
                    ("steering", cal.steering.pin, neutral[0]),
                    ("throttle", cal.throttle.pin, neutral[1]),
                ):
                    self._devices[channel] = PWMOutputDevice(
                        pin, frequency=cal.frequency_hz, initial_value=cal.duty(pulse_us), pin_factory=factory
                    )
            except Exception as exc:
                self._close_devices()
                raise ActuatorError(
                    f"cannot drive PWM on pins {cal.steering.pin} (steering) and {cal.throttle.pin} "
                    f"(throttle): {exc}"
                ) from exc
            self.last_pulses_us = neutral

    def disconnect(self) -> None:
        with self._lock:
            if self._devices:
                try:  # neutral first, so the car does not keep its last command while the pins close
                    self._write_neutral()
                except Exception:
                    pass
            self._close_devices()

    def _connected(self) -> bool:
        return bool(self._devices)

    def _write(self, channel: str, pulse_us: float) -> None:
        self._devices[channel].value = self.calibration.duty(pulse_us)

    def _close_devices(self) -> None:
        for dev in self._devices.values():
            try:
                dev.close()
            except Exception:
                pass
        self._devices = {}
