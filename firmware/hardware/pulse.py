"""What every pulse-driven steering servo and ESC shares, whatever makes the pulses (gpiozero PWM
pins in :mod:`firmware.hardware.pwm`, the PCA9685 board in :mod:`firmware.hardware.pca9685`): the
calibration's limits and pulse widths, the pulses last sent, and raw pulses while calibrating.

A board implements three things: ``connect``/``disconnect`` (start and release the outputs, at
neutral), ``_connected`` and ``_write`` (one channel's pulse, ``"steering"`` or ``"throttle"``).
"""

import threading
from abc import abstractmethod

from firmware.actuators import Actuators, Applied
from firmware.calibration import Calibration

CHANNELS = ("steering", "throttle")


class ActuatorError(RuntimeError):
    """The outputs cannot be driven (no GPIO or I²C, pin busy, library missing)."""


class PulseActuators(Actuators):
    """A steering servo and an ESC on two pulse outputs, pulse widths from a calibration.

    ``apply`` clips each command to the calibration's limits, sends both pulses and returns the
    clipped command (what the car reports and records).
    """

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self._lock = threading.Lock()
        self.last_pulses_us: tuple[float, float] | None = None

    def neutral_us(self) -> tuple[float, float]:
        """Pulse widths for straight ahead and no throttle (which also arms most ESCs)."""
        cal = self.calibration
        return cal.steering.pulse_us(0.0), cal.throttle.pulse_us(0.0)

    def apply(self, steering: float, throttle: float) -> Applied:
        cal = self.calibration
        s = cal.steering.limited(steering)
        t = cal.throttle.limited(throttle)
        pulses = (cal.steering.pulse_us(s), cal.throttle.pulse_us(t))
        with self._lock:
            self._require_connected()
            for channel, pulse_us in zip(CHANNELS, pulses, strict=True):
                self._write(channel, pulse_us)
            self.last_pulses_us = pulses
        return Applied(s, t)

    def set_pulse_us(self, channel: str, pulse_us: float) -> None:
        """Drive a raw pulse on ``steering`` or ``throttle`` (used only while calibrating)."""
        if channel not in CHANNELS:
            raise ActuatorError(f"no channel {channel!r}; expected steering or throttle")
        with self._lock:
            self._require_connected()
            self._write(channel, pulse_us)

    def _write_neutral(self) -> None:
        """Neutral on both channels (callers hold the lock); a failure is left to the caller."""
        for channel, pulse_us in zip(CHANNELS, self.neutral_us(), strict=True):
            self._write(channel, pulse_us)

    def _require_connected(self) -> None:
        if not self._connected():
            raise ActuatorError("actuators are not connected")

    @abstractmethod
    def _connected(self) -> bool:
        """Whether the outputs are open."""

    @abstractmethod
    def _write(self, channel: str, pulse_us: float) -> None:
        """Send one channel's pulse width (µs); raise :class:`ActuatorError` on failure."""
