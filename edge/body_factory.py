"""Build the car's body (camera, actuators, sensors) from its configuration.

``camera.kind`` and ``actuators.kind`` name plugins (:mod:`edge.plugins`); the factories below are
paddock's own. ``sim`` is not a plugin: the simulated camera and actuators share one world, so a
simulated car gets its whole body from :func:`edge.sim.build_sim_body`.
"""

import logging
from typing import Any

from edge import plugins
from edge.config import CarConfig, ConfigError
from firmware.actuators import Actuators
from firmware.calibration import CalibrationError, load_calibration
from firmware.camera import Camera, CameraConfig
from firmware.car_body import Body
from firmware.sensors import CpuTemperature, Ina219Battery, Mpu6050Imu, Sensor, SensorError, SensorSuite

log = logging.getLogger(__name__)


def _camera_config(config: CarConfig) -> CameraConfig:
    c = config.camera
    return CameraConfig(width=c.width, height=c.height, fps=c.fps)


def picamera(config: CarConfig) -> Camera:
    """Camera plugin ``picamera``: the Pi camera through picamera2."""
    from firmware.hardware.picamera import PiCamera

    c = config.camera
    return PiCamera(_camera_config(config), camera_num=c.camera_num, hflip=c.hflip, vflip=c.vflip)


def usb_camera(config: CarConfig) -> Camera:
    """Camera plugin ``usb``: a USB camera (or a video file) through OpenCV."""
    from firmware.hardware.usb_camera import UsbCamera

    return UsbCamera(_camera_config(config), device=config.camera.device)


def test_pattern_camera(config: CarConfig) -> Camera:
    """Camera plugin ``test_pattern``: moving bars, no device."""
    from firmware.hardware.test_pattern import TestPatternCamera

    return TestPatternCamera(_camera_config(config))


def pwm_actuators(config: CarConfig) -> Actuators:
    """Actuators plugin ``pwm``: steering servo and ESC through gpiozero, calibrated."""
    from firmware.hardware.pwm import PwmActuators

    a = config.actuators
    try:
        calibration = load_calibration(a.calibration)
    except CalibrationError as exc:
        raise ConfigError(f"actuators.calibration: {exc}") from None
    return PwmActuators(calibration, pin_factory=a.pin_factory)


def pca9685_actuators(config: CarConfig) -> Actuators:
    """Actuators plugin ``pca9685``: DonkeyCar's I²C PWM board; channels and board from the calibration."""
    from firmware.hardware.pca9685 import Pca9685Actuators
    from firmware.hardware.pulse import ActuatorError

    try:
        return Pca9685Actuators(load_calibration(config.actuators.calibration))
    except CalibrationError as exc:
        raise ConfigError(f"actuators.calibration: {exc}") from None
    except ActuatorError as exc:
        raise ConfigError(f"actuators: {exc}") from None


def null_actuators(config: CarConfig) -> Actuators:
    """Actuators plugin ``none``: outputs off (bench)."""
    from firmware.hardware.null_actuators import NullActuators

    return NullActuators()


def build_camera(config: CarConfig) -> Camera:
    if config.camera.kind == "sim":
        raise ConfigError("camera.kind = 'sim' comes with the simulated body (actuators.kind = 'sim')")
    factory = _plugin(plugins.CAMERAS, config.camera.kind, "camera.kind")
    camera: Camera = factory(config)
    return camera


def build_actuators(config: CarConfig) -> Actuators:
    factory = _plugin(plugins.ACTUATORS, config.actuators.kind, "actuators.kind")
    actuators: Actuators = factory(config)
    return actuators


def build_sensors(config: CarConfig) -> SensorSuite | None:
    s = config.sensors
    sensors: list[Sensor] = []
    if s.cpu_temp:
        sensors.append(CpuTemperature())
    try:
        if s.battery == "ina219":
            sensors.append(Ina219Battery(s.i2c_bus, s.ina219_address))
        if s.imu == "mpu6050":
            sensors.append(Mpu6050Imu(s.i2c_bus, s.mpu6050_address))
    except SensorError as exc:
        raise ConfigError(f"sensors: {exc}") from None
    return SensorSuite(sensors) if sensors else None


def build_body(config: CarConfig) -> Body:
    """The body the config describes (not connected yet)."""
    if config.actuators.kind == "sim":
        from edge.sim import build_sim_body

        return build_sim_body(config)
    actuators = build_actuators(config)
    return Body(build_camera(config), actuators, build_sensors(config))


def _plugin(group: str, name: str, setting: str) -> Any:
    try:
        return plugins.load(group, name)
    except plugins.PluginError as exc:
        raise ConfigError(f"{setting}: {exc}") from None
