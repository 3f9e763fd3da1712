from pathlib import Path

import pytest

from firmware.calibration import (
    Calibration,
    CalibrationError,
    SteeringCalibration,
    ThrottleCalibration,
    load_calibration,
    save_calibration,
)


def test_pulse_mapping_is_piecewise_around_the_centre() -> None:
    s = SteeringCalibration(pin=12, min_us=1100, center_us=1450, max_us=1900)
    assert s.pulse_us(0) == 1450
    assert s.pulse_us(-1) == 1100
    assert s.pulse_us(1) == 1900
    assert s.pulse_us(0.5) == pytest.approx(1450 + 0.5 * 450)
    assert s.pulse_us(-0.5) == pytest.approx(1450 - 0.5 * 350)
    assert s.pulse_us(float("nan")) == 1450  # NaN never reaches a servo


def test_reverse_trim_and_limits() -> None:
    s = SteeringCalibration(pin=12, reverse=True, trim=0.1, limit=0.6)
    assert s.limited(1.0) == 0.6 and s.limited(-3) == -0.6
    # reverse flips the command, then trim shifts the pulse (trim is not part of the action)
    assert s.pulse_us(0.0) == pytest.approx(1500 + 0.1 * 500)
    assert s.pulse_us(0.5) == pytest.approx(1500 + (-0.5 + 0.1) * 500)
    t = ThrottleCalibration(pin=13, limit_forward=0.4, limit_reverse=0.2)
    assert t.limited(1) == 0.4 and t.limited(-1) == -0.2 and t.limited(0.1) == 0.1


def test_invalid_calibrations_are_refused() -> None:
    with pytest.raises(ValueError, match="min_us < center_us < max_us"):
        SteeringCalibration(pin=12, min_us=1600, center_us=1500, max_us=2000)
    with pytest.raises(ValueError, match="share pin"):
        Calibration(steering=SteeringCalibration(pin=5), throttle=ThrottleCalibration(pin=5))
    with pytest.raises(ValueError, match="PWM period"):
        Calibration(frequency_hz=400, steering=SteeringCalibration(pin=1, max_us=2600))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    cal = Calibration(
        frequency_hz=60,
        steering=SteeringCalibration(pin="GPIO18", min_us=1010, center_us=1490, max_us=1985, trim=-0.05),
        throttle=ThrottleCalibration(pin=13, reverse=True, limit_forward=0.35),
    )
    path = tmp_path / "etc" / "calibration.toml"
    save_calibration(cal, path)
    assert load_calibration(path) == cal
    assert not list(path.parent.glob(".*tmp*"))  # the temp file was renamed away


def test_load_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"calibration file not found.*paddock car calibrate"):
        load_calibration(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[steering]\nmin_us = 'wide'\n")
    with pytest.raises(CalibrationError, match=r"bad\.toml: steering\.min_us"):
        load_calibration(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("[throttle]\nneutral_us = 1500\n")
    with pytest.raises(CalibrationError, match=r"typo\.toml: throttle\.neutral_us"):
        load_calibration(typo)
    broken = tmp_path / "broken.toml"
    broken.write_text("[steering\n")
    with pytest.raises(CalibrationError, match="not valid TOML"):
        load_calibration(broken)
