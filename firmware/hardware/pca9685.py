"""Steering servo and ESC on a PCA9685 16-channel PWM board over I²C (DonkeyCar's default board).

The PCA9685 makes every channel's pulse itself from a 25 MHz oscillator divided by ``PRESCALE + 1``
into 4096 steps per period, so pulses are steady whatever the Pi is doing. Each channel has four
registers (``LEDn_ON_L/H``, ``LEDn_OFF_L/H``): the output goes high at count ON and low at count OFF.
Registers and bits are from NXP's PCA9685 datasheet (rev. 4, §7.3). The bus is any object with
smbus2's ``SMBus`` methods; tests pass a fake that checks the register map.

The board's settings (bus, address, oscillator) come from the calibration's ``[pca9685]`` table; the
calibration's ``pin`` of each channel is then its PCA9685 channel number (0-15).
"""

import time
from collections.abc import Callable
from typing import Any, Protocol

from firmware.calibration import Calibration, Pca9685Settings
from firmware.hardware.pulse import ActuatorError, PulseActuators
from schemas.release import install_hint

MODE1 = 0x00
MODE2 = 0x01
LED0_ON_L = 0x06  # channel n's four registers start at LED0_ON_L + 4 n
PRESCALE = 0xFE
# MODE1 bits
RESTART = 0x80
AI = 0x20  # register auto-increment, so one block write sets a channel's four registers
SLEEP = 0x10
ALLCALL = 0x01
# MODE2 bits
OUTDRV = 0x04  # totem-pole outputs (servo signal lines want a driven output, not open drain)
FULL_OFF = 0x10  # bit 4 of LEDn_OFF_H: the channel stays low
STEPS = 4096
CHANNELS = 16


class I2cBus(Protocol):
    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int]) -> None: ...

    def close(self) -> None: ...


def prescale_for(frequency_hz: float, oscillator_hz: float) -> int:
    """PRESCALE = round(osc / (4096 · f)) - 1 (datasheet eq. 1), within the chip's 3..255."""
    value = round(oscillator_hz / (STEPS * frequency_hz)) - 1
    if not 3 <= value <= 255:
        raise ActuatorError(f"{frequency_hz} Hz is outside what the PCA9685 can make (24-1526 Hz)")
    return value


class Pca9685:
    """The chip: wake-up with a frequency, then a pulse width (µs) per channel."""

    def __init__(self, bus: I2cBus, address: int = 0x40, oscillator_hz: float = 25_000_000.0) -> None:
        self.bus = bus
        self.address = address
        self.oscillator_hz = oscillator_hz
        self.frequency_hz = 0.0  # the frequency the prescaler actually makes

    def start(self, frequency_hz: float) -> None:
        """Reset the mode registers and set the frequency (PRESCALE is writable only while asleep)."""
        prescale = prescale_for(frequency_hz, self.oscillator_hz)
        self._write(MODE2, OUTDRV)
        self._write(MODE1, SLEEP | AI | ALLCALL)
        self._write(PRESCALE, prescale)
        self._write(MODE1, AI | ALLCALL)  # wake up
        time.sleep(0.0005)  # the oscillator needs 500 µs before RESTART may be set
        self._write(MODE1, RESTART | AI | ALLCALL)
        self.frequency_hz = self.oscillator_hz / (STEPS * (prescale + 1))

    def counts(self, pulse_us: float) -> int:
        """OFF count of a pulse width at the frequency the chip runs at."""
        if self.frequency_hz <= 0:
            raise ActuatorError("the PCA9685 is not started")
        return max(0, min(STEPS - 1, round(pulse_us * self.frequency_hz * STEPS / 1e6)))

    def set_pulse_us(self, channel: int, pulse_us: float) -> None:
        off = self.counts(pulse_us)
        self._channel(channel, [0, 0, off & 0xFF, off >> 8])

    def set_off(self, channel: int) -> None:
        """Hold the channel low: a servo goes limp, an ESC sees no signal and disarms."""
        self._channel(channel, [0, 0, 0, FULL_OFF])

    def sleep(self) -> None:
        self._write(MODE1, SLEEP | AI | ALLCALL)

    def _channel(self, channel: int, values: list[int]) -> None:
        if not 0 <= channel < CHANNELS:
            raise ActuatorError(f"PCA9685 channel {channel} does not exist (0-15)")
        try:
            self.bus.write_i2c_block_data(self.address, LED0_ON_L + 4 * channel, values)
        except OSError as exc:
            raise ActuatorError(f"PCA9685 at {self.address:#04x}: write failed: {exc}") from exc

    def _write(self, register: int, value: int) -> None:
        try:
            self.bus.write_byte_data(self.address, register, value)
        except OSError as exc:
            raise ActuatorError(
                f"no PCA9685 answers at I²C address {self.address:#04x} ({exc}); check the wiring, "
                "that I²C is enabled (raspi-config) and `i2cdetect -y 1`"
            ) from exc


def open_smbus(bus: int) -> I2cBus:
    try:
        from smbus2 import SMBus
    except ImportError as exc:  # pragma: no cover - smbus2 is a car dependency
        raise ActuatorError(f"the PCA9685 needs smbus2: {install_hint('car')}") from exc
    try:
        return SMBus(bus)
    except (OSError, FileNotFoundError) as exc:
        raise ActuatorError(f"cannot open /dev/i2c-{bus}: {exc} (enable I²C with raspi-config)") from exc


class Pca9685Actuators(PulseActuators):
    """Steering and throttle on two PCA9685 channels; clipping and pulse widths are
    :class:`~firmware.hardware.pulse.PulseActuators`'.

    ``calibration.steering.pin`` and ``calibration.throttle.pin`` are channel numbers; the board
    is ``calibration.pca9685`` (default: bus 1, address 0x40). ``open_bus`` turns a bus number into
    an smbus2-like object (tests pass a fake).
    """

    kind = "pca9685"

    def __init__(self, calibration: Calibration, open_bus: Callable[[int], Any] = open_smbus) -> None:
        super().__init__(calibration)
        self.board: Pca9685Settings = calibration.pca9685 or Pca9685Settings()
        self._open_bus = open_bus
        self._chip: Pca9685 | None = None
        self.steering_channel = _channel(calibration.steering.pin, "steering")
        self.throttle_channel = _channel(calibration.throttle.pin, "throttle")
        self._numbers = {"steering": self.steering_channel, "throttle": self.throttle_channel}

    def connect(self) -> None:
        with self._lock:
            if self._chip is not None:
                return
            chip = Pca9685(self._open_bus(self.board.bus), self.board.address, self.board.oscillator_hz)
            try:
                chip.start(self.calibration.frequency_hz)
                self._chip = chip
                self._write_neutral()  # arms most ESCs
            except ActuatorError:
                self._chip = None
                _close(chip.bus)
                raise
            self.last_pulses_us = self.neutral_us()

    def disconnect(self) -> None:
        with self._lock:
            chip = self._chip
            if chip is None:
                return
            try:  # neutral first, so the car never keeps its last command, then the outputs off
                self._write_neutral()
                chip.set_off(self.steering_channel)
                chip.set_off(self.throttle_channel)
            except ActuatorError:
                pass
            self._chip = None
            _close(chip.bus)

    def _connected(self) -> bool:
        return self._chip is not None

    def _write(self, channel: str, pulse_us: float) -> None:
        assert self._chip is not None  # callers check _connected under the lock
        self._chip.set_pulse_us(self._numbers[channel], pulse_us)


def _channel(pin: int | str, name: str) -> int:
    text = str(pin)
    if not text.isdigit() or not 0 <= int(text) < CHANNELS:
        raise ActuatorError(f"{name}.pin = {pin!r}: on a PCA9685 the pin is a channel number 0-15")
    return int(text)


def _close(bus: Any) -> None:
    try:
        bus.close()
    except Exception:
        pass
