"""Optional sensors: CPU temperature, battery voltage (INA219) and an IMU (MPU-6050).

Sensors are read at telemetry rate, off the control loop (I²C reads take milliseconds). Each
sensor returns ``None`` fields for what it does not measure; :class:`SensorSuite` merges them. I²C
devices take an ``smbus2.SMBus``-like object (``read_i2c_block_data``, ``write_byte_data``);
``smbus2`` itself is imported only when a bus number is given.
"""

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SensorReading:
    battery_v: float | None = None
    cpu_temp_c: float | None = None
    accel_mps2: tuple[float, float, float] | None = None
    gyro_dps: tuple[float, float, float] | None = None
    errors: list[str] = field(default_factory=list)

    def merge(self, other: "SensorReading") -> "SensorReading":
        for f in fields(self):
            if f.name == "errors":
                self.errors.extend(other.errors)
            elif getattr(other, f.name) is not None:
                setattr(self, f.name, getattr(other, f.name))
        return self

    def imu(self) -> dict[str, float] | None:
        if self.accel_mps2 is None and self.gyro_dps is None:
            return None
        out: dict[str, float] = {}
        if self.accel_mps2 is not None:
            out.update(zip(("ax", "ay", "az"), self.accel_mps2, strict=True))
        if self.gyro_dps is not None:
            out.update(zip(("gx", "gy", "gz"), self.gyro_dps, strict=True))
        return out


class SensorError(RuntimeError):
    """A sensor that cannot be opened."""


class Sensor(ABC):
    name: str = "sensor"

    @abstractmethod
    def read(self) -> SensorReading: ...

    def close(self) -> None:  # noqa: B027 - most sensors hold nothing
        pass


class I2CBus(Protocol):
    def read_i2c_block_data(self, addr: int, reg: int, length: int) -> list[int]: ...
    def write_byte_data(self, addr: int, reg: int, value: int) -> None: ...


def open_i2c_bus(bus: int | I2CBus) -> I2CBus:
    if not isinstance(bus, int):
        return bus
    try:
        from smbus2 import SMBus
    except ImportError as exc:
        raise SensorError("I²C sensors need smbus2: pip install smbus2") from exc
    try:
        result: I2CBus = SMBus(bus)
    except OSError as exc:
        raise SensorError(f"cannot open /dev/i2c-{bus}: {exc} (enable I²C with raspi-config)") from exc
    return result


class CpuTemperature(Sensor):
    """The SoC temperature from sysfs (millidegrees Celsius)."""

    name = "cpu_temp"

    def __init__(self, path: Path = Path("/sys/class/thermal/thermal_zone0/temp")) -> None:
        self.path = path

    def read(self) -> SensorReading:
        try:
            return SensorReading(cpu_temp_c=int(self.path.read_text().strip()) / 1000.0)
        except (OSError, ValueError) as exc:
            return SensorReading(errors=[f"cpu_temp: {exc}"])


def _be16(hi: int, lo: int, signed: bool) -> int:
    v = (hi << 8) | lo
    if signed and v >= 0x8000:
        v -= 0x10000
    return v


class Ina219Battery(Sensor):
    """Battery voltage from an INA219 (bus voltage register: bits 15..3 × 4 mV)."""

    name = "ina219"
    BUS_VOLTAGE = 0x02

    def __init__(self, bus: int | I2CBus = 1, address: int = 0x40) -> None:
        self.bus = open_i2c_bus(bus)
        self.address = address

    def read(self) -> SensorReading:
        try:
            hi, lo = self.bus.read_i2c_block_data(self.address, self.BUS_VOLTAGE, 2)
        except OSError as exc:
            return SensorReading(errors=[f"ina219: {exc}"])
        raw = _be16(hi, lo, signed=False)
        return SensorReading(battery_v=round((raw >> 3) * 0.004, 3))


class Mpu6050Imu(Sensor):
    """Acceleration (±2 g range) and rotation rate (±250 °/s range) from an MPU-6050."""

    name = "mpu6050"
    PWR_MGMT_1 = 0x6B
    ACCEL_XOUT_H = 0x3B
    G = 9.80665

    def __init__(self, bus: int | I2CBus = 1, address: int = 0x68) -> None:
        self.bus = open_i2c_bus(bus)
        self.address = address
        try:
            self.bus.write_byte_data(address, self.PWR_MGMT_1, 0)  # leave sleep mode
        except OSError as exc:
            raise SensorError(f"no MPU-6050 at I²C address {address:#04x}: {exc}") from exc

    def read(self) -> SensorReading:
        try:
            raw = self.bus.read_i2c_block_data(self.address, self.ACCEL_XOUT_H, 14)
        except OSError as exc:
            return SensorReading(errors=[f"mpu6050: {exc}"])
        words = [_be16(raw[i], raw[i + 1], signed=True) for i in range(0, 14, 2)]
        accel = tuple(round(w / 16384.0 * self.G, 4) for w in words[0:3])
        gyro = tuple(round(w / 131.0, 3) for w in words[4:7])  # words[3] is the die temperature
        return SensorReading(accel_mps2=accel, gyro_dps=gyro)  # type: ignore[arg-type]


class SensorSuite:
    """All configured sensors, read together; a failing sensor reports an error, never raises."""

    def __init__(self, sensors: list[Sensor]) -> None:
        self.sensors = sensors

    def read(self) -> SensorReading:
        reading = SensorReading()
        for sensor in self.sensors:
            try:
                reading.merge(sensor.read())
            except Exception as exc:
                reading.errors.append(f"{sensor.name}: {exc}")
        return reading

    def close(self) -> None:
        for sensor in self.sensors:
            try:
                sensor.close()
            except Exception:
                log.exception("closing sensor %s", sensor.name)


def describe(readings: SensorReading) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if readings.battery_v is not None:
        out["battery_v"] = readings.battery_v
    if readings.cpu_temp_c is not None:
        out["cpu_temp_c"] = readings.cpu_temp_c
    imu = readings.imu()
    if imu:
        out["imu"] = imu
    return out
