"""DonkeyCar's steering and throttle calibration (``myconfig.py``) as a paddock calibration.

DonkeyCar stores pulses as 12-bit PCA9685 counts at ``PWM_FREQUENCY`` (60 Hz by default):
``STEERING_LEFT_PWM = 460`` is 460/4096 of a 16.7 ms period, 1872 µs. Both DonkeyCar styles are read:

* 4.4+/5.x: ``PWM_STEERING_THROTTLE = {"PWM_STEERING_PIN": "PCA9685.1:40.1", "STEERING_LEFT_PWM": 460, ...}``
  (pin specs ``PCA9685.<bus>:<hex address>.<channel>``, ``PIGPIO.BCM.<n>``, ``RPI_GPIO.BOARD.<n>``
  and ``RPI_GPIO.BCM.<n>``);
* older: top-level ``STEERING_CHANNEL``, ``STEERING_LEFT_PWM``, ``THROTTLE_FORWARD_PWM``, ...,
  ``PCA9685_I2C_ADDR`` and ``PCA9685_I2C_BUSNUM``.

The file is parsed, never run: only top-level assignments of literals are read (a config file is
code, and importing a stranger's code to read five numbers is not worth the risk). Values it does not
set take DonkeyCar's defaults. DonkeyCar drives between the LEFT and RIGHT pulses with no separate
centre, so the centre is their midpoint; its throttle has FORWARD, STOPPED and REVERSE pulses, which
map to max, centre and min (with ``reverse`` when forward is the smaller pulse). paddock's throttle
limits are kept at their (cautious) defaults: DonkeyCar's pulses are the full range, not a limit.
"""

import ast
import re
from pathlib import Path
from typing import Any

from firmware.calibration import Calibration, CalibrationError, Pca9685Settings

DONKEY_DEFAULTS: dict[str, Any] = {
    "PWM_STEERING_PIN": "PCA9685.1:40.1",
    "PWM_THROTTLE_PIN": "PCA9685.1:40.0",
    "PWM_STEERING_INVERTED": False,
    "PWM_THROTTLE_INVERTED": False,
    "STEERING_LEFT_PWM": 460,
    "STEERING_RIGHT_PWM": 290,
    "THROTTLE_FORWARD_PWM": 500,
    "THROTTLE_STOPPED_PWM": 370,
    "THROTTLE_REVERSE_PWM": 220,
    "PWM_FREQUENCY": 60,
}
_PCA = re.compile(r"^PCA9685\.(\d+):([0-9a-fA-F]{1,2})\.(\d+)$")
_GPIO = re.compile(r"^(PIGPIO|RPI_GPIO)\.(BCM|BOARD)\.(\d+)$")


def read_myconfig(path: Path) -> dict[str, Any]:
    """Top-level ``NAME = literal`` assignments of a DonkeyCar config file."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such file") from None
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: not a Python config file: {exc}") from None
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue  # an expression (a function call, a name): not a calibration value
    return values


def _settings(values: dict[str, Any]) -> dict[str, Any]:
    """DonkeyCar's effective settings: the newer dict style wins over the older names."""
    merged = dict(DONKEY_DEFAULTS)
    if "STEERING_CHANNEL" in values or "PCA9685_I2C_ADDR" in values:
        bus = values.get("PCA9685_I2C_BUSNUM") or 1
        addr = int(values.get("PCA9685_I2C_ADDR", 0x40))
        merged["PWM_STEERING_PIN"] = f"PCA9685.{bus}:{addr:x}.{int(values.get('STEERING_CHANNEL', 1))}"
        merged["PWM_THROTTLE_PIN"] = f"PCA9685.{bus}:{addr:x}.{int(values.get('THROTTLE_CHANNEL', 0))}"
    merged |= {k: values[k] for k in DONKEY_DEFAULTS if k in values}
    pwm = values.get("PWM_STEERING_THROTTLE")
    if isinstance(pwm, dict):
        merged |= {k: v for k, v in pwm.items() if k in DONKEY_DEFAULTS}
    return merged


def _pin(spec: str, name: str) -> tuple[int | str, Pca9685Settings | None]:
    if m := _PCA.match(spec):
        return int(m[3]), Pca9685Settings(bus=int(m[1]), address=int(m[2], 16))
    if m := _GPIO.match(spec):
        return (int(m[3]) if m[2] == "BCM" else f"BOARD{m[3]}"), None
    raise CalibrationError(f"{name} = {spec!r}: not a pin paddock can drive (PCA9685.* or *.BCM.*/*.BOARD.*)")


def calibration_from_donkeycar(values: dict[str, Any]) -> tuple[Calibration, str]:
    """A paddock calibration and the actuator kind (``pca9685`` or ``pwm``) for DonkeyCar ``values``."""
    s = _settings(values)
    freq = float(s["PWM_FREQUENCY"])

    def us(count: Any) -> float:
        return round(float(count) * 1e6 / (freq * 4096), 1)

    steer_pin, steer_board = _pin(str(s["PWM_STEERING_PIN"]), "PWM_STEERING_PIN")
    throttle_pin, throttle_board = _pin(str(s["PWM_THROTTLE_PIN"]), "PWM_THROTTLE_PIN")
    if (steer_board is None) != (throttle_board is None) or steer_board != throttle_board:
        raise CalibrationError("steering and throttle must be on the same PCA9685 board, or both on GPIO")
    left, right = us(s["STEERING_LEFT_PWM"]), us(s["STEERING_RIGHT_PWM"])
    fwd, stop, rev = (
        us(s["THROTTLE_FORWARD_PWM"]),
        us(s["THROTTLE_STOPPED_PWM"]),
        us(s["THROTTLE_REVERSE_PWM"]),
    )
    # paddock: -1 is left and full reverse at min_us, unless reverse swaps the channel.
    steer_reverse = (left > right) != bool(s["PWM_STEERING_INVERTED"])
    throttle_reverse = (fwd < rev) != bool(s["PWM_THROTTLE_INVERTED"])
    try:
        cal = Calibration.model_validate(
            {
                "frequency_hz": freq,
                "steering": {
                    "pin": steer_pin,
                    "min_us": min(left, right),
                    "center_us": round((left + right) / 2, 1),
                    "max_us": max(left, right),
                    "reverse": steer_reverse,
                },
                "throttle": {
                    "pin": throttle_pin,
                    "min_us": min(fwd, rev),
                    "center_us": stop,
                    "max_us": max(fwd, rev),
                    "reverse": throttle_reverse,
                },
                "pca9685": steer_board.model_dump() if steer_board else None,
            }
        )
    except ValueError as exc:
        raise CalibrationError(f"DonkeyCar's values do not make a calibration: {exc}") from None
    return cal, "pca9685" if steer_board else "pwm"
