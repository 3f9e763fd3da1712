"""Build the car's body (camera, actuators, sensors) from its configuration."""

import logging

from edge.config import CarConfig, ConfigError
from firmware.actuators import Actuators
from firmware.body import Body
from firmware.calibration import CalibrationError, load_calibration
from firmware.camera import Camera, CameraConfig
from firmware.sensors import CpuTemperature, Ina219Battery, Mpu6050Imu, Sensor, SensorError, SensorSuite

log = logging.getLogger(__name__)


def build_camera(config: CarConfig) -> Camera:
    c = config.camera
    cam_cfg = CameraConfig(width=c.width, height=c.height, fps=c.fps)
    if c.kind == "picamera":
        from firmware.hardware.picamera import PiCamera

        return PiCamera(cam_cfg, camera_num=c.camera_num, hflip=c.hflip, vflip=c.vflip)
    if c.kind == "usb":
        from firmware.hardware.usb_camera import UsbCamera

        return UsbCamera(cam_cfg, device=c.device)
    if c.kind == "test_pattern":
        from firmware.hardware.test_pattern import TestPatternCamera

        return TestPatternCamera(cam_cfg)
    raise ConfigError(f"camera.kind = {c.kind!r} comes with the simulated body (actuators.kind = 'sim')")


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
    """The hardware body the config describes (not connected yet)."""
    a = config.actuators
    if a.kind == "sim":
        from edge.sim import build_sim_body

        return build_sim_body(config)
    if a.kind in ("pwm", "pca9685"):
        from firmware.hardware.pca9685 import Pca9685Actuators
        from firmware.hardware.pwm import ActuatorError, PwmActuators

        try:
            calibration = load_calibration(a.calibration)
        except CalibrationError as exc:
            raise ConfigError(f"actuators.calibration: {exc}") from None
        try:
            actuators: Actuators = (
                PwmActuators(calibration, pin_factory=a.pin_factory)
                if a.kind == "pwm"
                else Pca9685Actuators(calibration)
            )
        except ActuatorError as exc:
            raise ConfigError(f"actuators: {exc}") from None
    else:
        from firmware.hardware.null_actuators import NullActuators

        actuators = NullActuators()
    return Body(build_camera(config), actuators, build_sensors(config))
