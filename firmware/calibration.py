"""Steering and throttle calibration: how a command in [-1, 1] becomes a PWM pulse width.

A calibration file is TOML (``/etc/paddock/calibration.toml`` by default)::

    frequency_hz = 50

    [steering]
    pin = 12            # BCM number, or "GPIO12" / "BOARD32"
    min_us = 1000       # pulse for full left (-1)
    center_us = 1500    # pulse for straight ahead (0)
    max_us = 2000       # pulse for full right (+1)
    reverse = false     # swap left and right
    trim = 0.0          # mechanical offset, added after limits; never recorded
    limit = 1.0         # |steering| never exceeds this

    [throttle]
    pin = 13
    min_us = 1000       # full reverse (-1)
    center_us = 1500    # neutral (0)
    max_us = 2000       # full forward (+1)
    reverse = false
    trim = 0.0
    limit_forward = 0.5
    limit_reverse = 0.5

With a PCA9685 board (``actuators.kind = "pca9685"``, DonkeyCar's default) each ``pin`` is the
board's channel number (0-15) and an optional table names the board::

    [pca9685]
    bus = 1             # /dev/i2c-1
    address = 0x40      # written as 64
    oscillator_hz = 25000000.0

``paddock car import-donkeycar myconfig.py`` writes such a file from DonkeyCar's calibration.

The mapping is piecewise linear around the centre, so asymmetric linkages keep 0 at ``center_us``.
Limits clip the *command*; that clipped command is what the car reports and records. ``trim`` then
shifts the pulse (it corrects the linkage, so it is not part of the action).
"""

import math
import tomllib
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from firmware.actuators import clip_unit
from infra.files import write_atomic

DEFAULT_CALIBRATION_PATH = Path("/etc/paddock/calibration.toml")


class CalibrationError(ValueError):
    """A calibration file that cannot be read or does not make sense."""


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    pin: int | str = Field(description="GPIO pin: BCM number or a gpiozero name like 'GPIO12'")
    min_us: float = Field(default=1000.0, ge=400, le=2600, description="pulse width at -1, microseconds")
    center_us: float = Field(default=1500.0, ge=400, le=2600, description="pulse width at 0, microseconds")
    max_us: float = Field(default=2000.0, ge=400, le=2600, description="pulse width at +1, microseconds")
    reverse: bool = Field(default=False, description="swap the direction of the channel")
    trim: float = Field(default=0.0, ge=-0.5, le=0.5, description="offset added after limits (linkage)")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min_us < self.center_us < self.max_us:
            raise ValueError(
                f"pulse widths must satisfy min_us < center_us < max_us, got "
                f"{self.min_us} / {self.center_us} / {self.max_us}"
            )
        return self

    def pulse_us(self, value: float) -> float:
        """Pulse width for an already limited command ``value`` (trim and reverse applied here)."""
        v = clip_unit(value)
        if self.reverse:
            v = -v
        v = max(-1.0, min(1.0, v + self.trim))
        if v >= 0:
            return self.center_us + v * (self.max_us - self.center_us)
        return self.center_us + v * (self.center_us - self.min_us)


class SteeringCalibration(_Channel):
    pin: int | str = Field(default=12, description="GPIO pin of the steering servo")
    limit: float = Field(default=1.0, gt=0, le=1, description="largest |steering| ever applied")

    def limited(self, value: float) -> float:
        return max(-self.limit, min(self.limit, clip_unit(value)))


class ThrottleCalibration(_Channel):
    pin: int | str = Field(default=13, description="GPIO pin of the ESC signal")
    limit_forward: float = Field(default=0.5, ge=0, le=1, description="largest forward throttle applied")
    limit_reverse: float = Field(default=0.5, ge=0, le=1, description="largest reverse throttle applied")

    def limited(self, value: float) -> float:
        return max(-self.limit_reverse, min(self.limit_forward, clip_unit(value)))


class Pca9685Settings(BaseModel):
    """Where the PCA9685 board is, when the channels are on one."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    bus: int = Field(default=1, ge=0, description="I²C bus number (/dev/i2c-N)")
    address: int = Field(default=0x40, ge=0x03, le=0x77, description="I²C address of the board")
    oscillator_hz: float = Field(
        default=25_000_000.0,
        ge=20_000_000,
        le=30_000_000,
        description="the board's oscillator (nominally 25 MHz; boards vary by a few per cent)",
    )


class Calibration(BaseModel):
    """Everything needed to turn steering/throttle commands into pulses."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    frequency_hz: float = Field(default=50.0, ge=40, le=400, description="PWM frequency (servos: 50-60 Hz)")
    steering: SteeringCalibration = Field(default_factory=SteeringCalibration)
    throttle: ThrottleCalibration = Field(default_factory=ThrottleCalibration)
    pca9685: Pca9685Settings | None = Field(default=None, description="the PCA9685 board, if one is used")

    @model_validator(mode="after")
    def _fits_period(self) -> Self:
        period_us = 1e6 / self.frequency_hz
        for name, ch in (("steering", self.steering), ("throttle", self.throttle)):
            if ch.max_us >= period_us:
                raise ValueError(f"{name}.max_us {ch.max_us} does not fit a {period_us:.0f} µs PWM period")
        if str(self.steering.pin) == str(self.throttle.pin):
            raise ValueError(f"steering and throttle share pin {self.steering.pin}")
        return self

    def duty(self, pulse_us: float) -> float:
        """Duty cycle (0..1) of a pulse at this calibration's frequency."""
        return pulse_us * self.frequency_hz / 1e6

    def to_toml(self) -> str:
        return _dump_toml(self.model_dump())


def load_calibration(path: Path) -> Calibration:
    """Read a calibration file, with errors that name the file and the field."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(
            f"{path}: calibration file not found (create it with `paddock car calibrate`)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise CalibrationError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Calibration.model_validate(data)
    except ValidationError as exc:
        raise CalibrationError(f"{path}: {_errors(exc)}") from None


def save_calibration(calibration: Calibration, path: Path) -> None:
    """Write atomically (temp file, fsync, rename), so a power cut never leaves half a file."""
    write_atomic(path, calibration.to_toml().encode())


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(file)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be written to TOML")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _dump_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for flat tables of scalars (all a calibration holds)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    for key, table in data.items():
        if isinstance(table, dict):
            lines.append("")
            lines.append(f"[{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None)
    return "\n".join(lines) + "\n"
