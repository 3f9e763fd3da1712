"""A fake I²C bus with smbus2's ``SMBus`` methods and a PCA9685 on it that behaves like the chip.

It keeps the chip's 256 registers with their power-on values (MODE1 = SLEEP | ALLCALL,
PRESCALE = 30), refuses registers the datasheet reserves, ignores PRESCALE writes unless the chip is
asleep (as the real one does), auto-increments block writes only when MODE1's AI bit is set, and
records every write. ``pulse_us(channel)`` decodes what a channel outputs at the frequency the
prescaler makes; with the oscillator stopped (asleep) or the channel full-off there is no pulse.
"""

from dataclasses import dataclass, field

MODE1, MODE2, PRESCALE = 0x00, 0x01, 0xFE
SLEEP, AI, RESTART = 0x10, 0x20, 0x80
VALID = set(range(0x00, 0x46)) | set(range(0xFA, 0x100))  # 0x46..0xF9 are reserved


@dataclass
class FakePca9685:
    address: int = 0x40
    oscillator_hz: float = 25_000_000.0
    registers: list[int] = field(default_factory=lambda: [0] * 256)
    writes: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.registers[MODE1] = SLEEP | 0x01
        self.registers[MODE2] = 0x04
        self.registers[PRESCALE] = 30

    def write(self, register: int, value: int) -> None:
        if register not in VALID:
            raise OSError(f"PCA9685 register {register:#04x} is reserved")
        if not 0 <= value <= 0xFF:
            raise OSError(f"byte out of range: {value}")
        self.writes.append((register, value))
        if register == PRESCALE and not self.registers[MODE1] & SLEEP:
            return  # the datasheet: PRE_SCALE is written only while SLEEP is set
        if register == MODE1 and value & RESTART:
            value &= ~RESTART  # writing 1 restarts the PWM and clears the bit
        self.registers[register] = value

    @property
    def asleep(self) -> bool:
        return bool(self.registers[MODE1] & SLEEP)

    @property
    def frequency_hz(self) -> float:
        return self.oscillator_hz / (4096 * (self.registers[PRESCALE] + 1))

    def channel(self, n: int) -> tuple[int, int, bool]:
        base = 0x06 + 4 * n
        r = self.registers
        on = r[base] | (r[base + 1] & 0x0F) << 8
        off = r[base + 2] | (r[base + 3] & 0x0F) << 8
        return on, off, bool(r[base + 3] & 0x10)

    def pulse_us(self, n: int) -> float | None:
        on, off, full_off = self.channel(n)
        if self.asleep or full_off:
            return None
        return (off - on) % 4096 * 1e6 / (self.frequency_hz * 4096)


class FakeSMBus:
    """``smbus2.SMBus`` stand-in holding fake chips by address."""

    def __init__(self, *chips: FakePca9685) -> None:
        self.chips = {c.address: c for c in chips}
        self.closed = False

    def _chip(self, addr: int) -> FakePca9685:
        if self.closed:
            raise OSError("bus closed")
        if addr not in self.chips:
            raise OSError(121, "Remote I/O error")  # what Linux says when nothing acknowledges
        return self.chips[addr]

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        self._chip(i2c_addr).write(register, value)

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        return self._chip(i2c_addr).registers[register]

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int]) -> None:
        chip = self._chip(i2c_addr)
        if len(data) > 1 and not chip.registers[MODE1] & AI:
            raise AssertionError("block write without MODE1.AI: the chip would write one register only")
        for i, value in enumerate(data):
            chip.write(register + i, value)

    def close(self) -> None:
        self.closed = True
