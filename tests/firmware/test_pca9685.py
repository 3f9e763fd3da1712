"""The PCA9685 driver against a fake I²C bus that behaves like the chip's register map."""

from pathlib import Path

import pytest

from edge.body_factory import pca9685_actuators
from edge.config import CarConfig, ConfigError
from firmware.calibration import (
    Calibration,
    Pca9685Settings,
    SteeringCalibration,
    ThrottleCalibration,
    load_calibration,
    save_calibration,
)
from firmware.donkeycar_calibration import calibration_from_donkeycar, read_myconfig
from firmware.hardware.calibrate import CalibrationWizard
from firmware.hardware.pca9685 import Pca9685, Pca9685Actuators, prescale_for
from firmware.hardware.pulse import ActuatorError
from tests.firmware.fake_i2c import MODE1, PRESCALE, SLEEP, FakePca9685, FakeSMBus

CAL = Calibration(
    frequency_hz=60,
    steering=SteeringCalibration(pin=1, min_us=1100, center_us=1480, max_us=1920, limit=0.8),
    throttle=ThrottleCalibration(pin=0, min_us=1000, center_us=1500, max_us=2000, limit_forward=0.5),
    pca9685=Pca9685Settings(bus=1, address=0x40),
)
STEP_US = 1e6 / (60 * 4096)  # one count at 60 Hz, about 4.07 µs


def rig(cal: Calibration = CAL, address: int = 0x40) -> tuple[Pca9685Actuators, FakePca9685, list[int]]:
    chip = FakePca9685(address=address)
    opened: list[int] = []

    def open_bus(n: int) -> FakeSMBus:
        opened.append(n)
        return FakeSMBus(chip)

    return Pca9685Actuators(cal, open_bus=open_bus), chip, opened


def test_prescale_follows_the_datasheet() -> None:
    assert prescale_for(50, 25e6) == 121  # round(25e6 / (4096 * 50)) - 1
    assert prescale_for(60, 25e6) == 101
    assert prescale_for(200, 25e6) == 30  # the chip's power-on value: 200 Hz
    with pytest.raises(ActuatorError, match="outside"):
        prescale_for(10, 25e6)


def test_connect_sets_the_frequency_while_asleep_then_wakes_at_neutral() -> None:
    act, chip, opened = rig()
    assert chip.asleep and chip.registers[PRESCALE] == 30
    act.connect()
    assert opened == [1]
    assert chip.registers[PRESCALE] == 101  # written while SLEEP was set, or the fake would keep 30
    assert not chip.asleep
    sleep_at = chip.writes.index((MODE1, chip.writes[1][1]))
    assert chip.writes[sleep_at][1] & SLEEP and chip.writes.index((PRESCALE, 101)) > sleep_at
    assert chip.frequency_hz == pytest.approx(25e6 / (4096 * 102))
    assert chip.pulse_us(1) == pytest.approx(1480, abs=STEP_US)
    assert chip.pulse_us(0) == pytest.approx(1500, abs=STEP_US)


def test_apply_writes_the_calibrated_pulses_on_the_right_channels() -> None:
    act, chip, _ = rig()
    act.connect()
    applied = act.apply(1.0, 1.0)
    assert (applied.steering, applied.throttle) == (0.8, 0.5)  # the limits clip the command
    assert chip.pulse_us(1) == pytest.approx(1480 + 0.8 * 440, abs=STEP_US)
    assert chip.pulse_us(0) == pytest.approx(1750, abs=STEP_US)
    act.apply(-0.5, -0.2)
    assert chip.pulse_us(1) == pytest.approx(1480 - 0.5 * 380, abs=STEP_US)
    assert chip.pulse_us(0) == pytest.approx(1400, abs=STEP_US)
    assert chip.pulse_us(5) == 0.0  # other channels untouched
    act.apply(float("nan"), 0.0)
    assert chip.pulse_us(1) == pytest.approx(1480, abs=STEP_US)


def test_disconnect_goes_neutral_then_switches_the_outputs_off() -> None:
    act, chip, _ = rig()
    act.connect()
    act.apply(0.5, 0.4)
    act.disconnect()
    assert chip.pulse_us(0) is None and chip.pulse_us(1) is None
    neutral_off = [v for r, v in chip.writes if r == 0x06 + 4 * 0 + 2]
    assert neutral_off[-2:] == [round(1500 * chip.frequency_hz * 4096 / 1e6) & 0xFF, 0]  # neutral, off
    act.disconnect()  # twice is fine
    with pytest.raises(ActuatorError, match="not connected"):
        act.apply(0, 0)


def test_no_chip_at_the_address_is_one_clear_error() -> None:
    act, _, _ = rig(address=0x41)
    with pytest.raises(ActuatorError, match="no PCA9685 answers at I²C address 0x40"):
        act.connect()


def test_pins_must_be_channels() -> None:
    bad = CAL.model_copy(update={"steering": SteeringCalibration(pin="GPIO12")})
    with pytest.raises(ActuatorError, match="channel number 0-15"):
        Pca9685Actuators(bad)


def test_the_wizard_calibrates_through_the_board() -> None:
    act, chip, _ = rig()
    act.connect()
    answers = iter(["", "l", "", "r", "", "", "", "", "", "", ""])
    said: list[str] = []
    CalibrationWizard(act, ask=lambda q: next(answers, ""), say=said.append).run()
    assert chip.writes  # every step went out over I²C


def test_block_writes_use_auto_increment() -> None:
    bus = FakeSMBus(FakePca9685())
    chip = Pca9685(bus)
    with pytest.raises(ActuatorError, match="not started"):
        chip.set_pulse_us(0, 1500)
    chip.start(50)
    chip.set_pulse_us(15, 2000)
    with pytest.raises(ActuatorError, match="channel 16"):
        chip.set_pulse_us(16, 1500)


DONKEY_5 = """
# myconfig.py of a DonkeyCar 5.x car
DRIVE_TRAIN_TYPE = "PWM_STEERING_THROTTLE"
PWM_STEERING_THROTTLE = {
    "PWM_STEERING_PIN": "PCA9685.1:41.3",
    "PWM_STEERING_SCALE": 1.0,
    "PWM_STEERING_INVERTED": False,
    "PWM_THROTTLE_PIN": "PCA9685.1:41.2",
    "PWM_THROTTLE_SCALE": 1.0,
    "PWM_THROTTLE_INVERTED": False,
    "STEERING_LEFT_PWM": 480,
    "STEERING_RIGHT_PWM": 300,
    "THROTTLE_FORWARD_PWM": 490,
    "THROTTLE_STOPPED_PWM": 375,
    "THROTTLE_REVERSE_PWM": 250,
}
CAMERA_TYPE = "PICAM"
MODELS_PATH = os.path.join(CAR_PATH, 'models')
"""


def test_donkeycar_5_calibration_drives_the_same_pulses(tmp_path: Path) -> None:
    (tmp_path / "myconfig.py").write_text(DONKEY_5)
    cal, kind = calibration_from_donkeycar(read_myconfig(tmp_path / "myconfig.py"))
    assert kind == "pca9685"
    assert cal.pca9685 == Pca9685Settings(bus=1, address=0x41)
    assert (cal.steering.pin, cal.throttle.pin, cal.frequency_hz) == (3, 2, 60)
    save_calibration(cal, tmp_path / "calibration.toml")
    cal = load_calibration(tmp_path / "calibration.toml")  # survives the TOML round trip
    act, chip, _ = rig(
        cal.model_copy(update={"steering": cal.steering.model_copy(update={"limit": 1.0})}), address=0x41
    )
    act.connect()
    count = 1e6 / (60 * 4096)
    act.apply(-1.0, 0.0)  # DonkeyCar: angle -1 is STEERING_LEFT_PWM
    assert chip.pulse_us(3) == pytest.approx(480 * count, abs=2 * count)
    assert chip.pulse_us(2) == pytest.approx(375 * count, abs=2 * count)
    act.apply(1.0, -1.0)
    assert chip.pulse_us(3) == pytest.approx(300 * count, abs=2 * count)
    assert chip.pulse_us(2) == pytest.approx(375 * count - 0.5 * (375 - 250) * count, abs=2 * count)


def test_donkeycar_older_names_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "myconfig.py").write_text(
        "STEERING_CHANNEL = 1\nSTEERING_LEFT_PWM = 420\nTHROTTLE_CHANNEL = 0\nPCA9685_I2C_ADDR = 0x40\n"
        "PCA9685_I2C_BUSNUM = None\nTHROTTLE_FORWARD_PWM = 400\nTHROTTLE_REVERSE_PWM = 300\n"
        "THROTTLE_STOPPED_PWM = 350\n"
    )
    cal, kind = calibration_from_donkeycar(read_myconfig(tmp_path / "myconfig.py"))
    assert kind == "pca9685" and cal.pca9685 == Pca9685Settings(bus=1, address=0x40)
    assert cal.steering.max_us == pytest.approx(420 * 1e6 / (60 * 4096), abs=0.1)
    assert cal.steering.min_us == pytest.approx(290 * 1e6 / (60 * 4096), abs=0.1)  # DonkeyCar's default
    assert cal.steering.reverse and not cal.throttle.reverse


def test_donkeycar_gpio_pins_become_pwm(tmp_path: Path) -> None:
    cal, kind = calibration_from_donkeycar(
        {
            "PWM_STEERING_THROTTLE": {
                "PWM_STEERING_PIN": "PIGPIO.BCM.13",
                "PWM_THROTTLE_PIN": "RPI_GPIO.BOARD.33",
            }
        }
    )
    assert kind == "pwm" and (cal.steering.pin, cal.throttle.pin) == (13, "BOARD33")
    assert cal.pca9685 is None


def test_the_actuators_plugin_builds_the_board_from_the_calibration(tmp_path: Path) -> None:
    # The plugin as the daemon calls it (its entry point is checked in the fresh install:
    # tests/deploy/test_release.py, since this environment's metadata may predate it).
    save_calibration(CAL, tmp_path / "calibration.toml")
    cfg = CarConfig.from_dict(
        {
            "state_dir": str(tmp_path),
            "car": {"id": "donkey-1"},
            "camera": {"kind": "test_pattern"},
            "actuators": {"kind": "none", "calibration": str(tmp_path / "calibration.toml")},
        },
        "test",
    )
    actuators = pca9685_actuators(cfg)
    assert isinstance(actuators, Pca9685Actuators)
    assert actuators.steering_channel == 1
    bad = CAL.model_copy(update={"throttle": ThrottleCalibration(pin="GPIO13")})
    save_calibration(bad, tmp_path / "calibration.toml")
    with pytest.raises(ConfigError, match="channel number"):
        pca9685_actuators(cfg)


def test_import_donkeycar_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deploy.cli import app

    (tmp_path / "myconfig.py").write_text(DONKEY_5)
    out = tmp_path / "calibration.toml"
    result = CliRunner().invoke(
        app, ["car", "import-donkeycar", str(tmp_path / "myconfig.py"), "--calibration", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert 'actuators.kind = "pca9685"' in result.output
    assert load_calibration(out).pca9685 == Pca9685Settings(bus=1, address=0x41)
    again = CliRunner().invoke(
        app, ["car", "import-donkeycar", str(tmp_path / "myconfig.py"), "--calibration", str(out)]
    )
    assert again.exit_code == 2 and "--force" in again.output
