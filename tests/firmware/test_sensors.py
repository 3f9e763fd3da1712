"""Sensors decode their registers; the I²C bus is the hardware boundary (an in-memory register map)."""

import struct
from pathlib import Path

import pytest

from firmware.sensors import CpuTemperature, Ina219Battery, Mpu6050Imu, SensorError, SensorSuite, describe


class RegisterBus:
    """An I²C bus with devices as register maps (what smbus2 would read from the chips)."""

    def __init__(self, devices: dict[int, dict[int, int]]) -> None:
        self.devices = devices
        self.writes: list[tuple[int, int, int]] = []

    def read_i2c_block_data(self, addr: int, reg: int, length: int) -> list[int]:
        if addr not in self.devices:
            raise OSError(121, "Remote I/O error")
        regs = self.devices[addr]
        return [regs.get(reg + i, 0) for i in range(length)]

    def write_byte_data(self, addr: int, reg: int, value: int) -> None:
        if addr not in self.devices:
            raise OSError(121, "Remote I/O error")
        self.writes.append((addr, reg, value))


def _regs(start: int, data: bytes) -> dict[int, int]:
    return {start + i: b for i, b in enumerate(data)}


def test_cpu_temperature(tmp_path: Path) -> None:
    f = tmp_path / "temp"
    f.write_text("48312\n")
    assert CpuTemperature(f).read().cpu_temp_c == pytest.approx(48.312)
    assert CpuTemperature(tmp_path / "none").read().errors


def test_ina219_bus_voltage() -> None:
    raw = int(7.4 / 0.004) << 3 | 0b010  # 7.4 V, low status bits set
    bus = RegisterBus({0x40: _regs(0x02, struct.pack(">H", raw))})
    assert Ina219Battery(bus).read().battery_v == pytest.approx(7.4)
    assert Ina219Battery(RegisterBus({})).read().errors


def test_mpu6050_scales_and_wakes_up() -> None:
    words = [16384, -8192, 0, 1234, 131, -262, 65]  # 1 g, -0.5 g, 0; temp; 1, -2, 0.5 °/s
    bus = RegisterBus({0x68: _regs(0x3B, struct.pack(">7h", *words))})
    imu = Mpu6050Imu(bus)
    assert (0x68, 0x6B, 0) in bus.writes
    r = imu.read()
    assert r.accel_mps2 == pytest.approx((9.80665, -4.903325, 0.0), abs=1e-3)
    assert r.gyro_dps == pytest.approx((1.0, -2.0, 0.496), abs=1e-3)
    with pytest.raises(SensorError, match="no MPU-6050"):
        Mpu6050Imu(RegisterBus({}))


def test_suite_merges_and_never_raises(tmp_path: Path) -> None:
    f = tmp_path / "temp"
    f.write_text("51000")
    bus = RegisterBus({0x40: _regs(0x02, struct.pack(">H", 2000 << 3))})
    suite = SensorSuite([CpuTemperature(f), Ina219Battery(bus)])
    reading = suite.read()
    assert describe(reading) == {"battery_v": 8.0, "cpu_temp_c": 51.0}
    del bus.devices[0x40]
    assert suite.read().errors == ["ina219: [Errno 121] Remote I/O error"]
