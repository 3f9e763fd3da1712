import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from firmware.camera import CameraConfig, CameraError, StaleFrame
from firmware.hardware.picamera import PiCamera
from firmware.hardware.test_pattern import TestPatternCamera, frame_index, pattern
from firmware.hardware.usb_camera import UsbCamera


def test_test_pattern_camera_delivers_fresh_numbered_frames() -> None:
    cam = TestPatternCamera(CameraConfig(width=96, height=64, fps=50))
    with pytest.raises(CameraError, match="not connected"):
        cam.read_latest(100)
    with cam:
        first = cam.read()
        second = cam.read()
        assert second.index > first.index
        assert first.image.shape == (64, 96, 3) and first.image.dtype == np.uint8
        assert frame_index(second.image) == second.index
        latest = cam.read_latest(max_age_ms=100)
        assert latest.index >= second.index
        assert (time.monotonic_ns() - latest.t_capture_ns) / 1e6 < 100
        time.sleep(0.25)
        rate = cam.frames_captured / (0.25 + 0.04)
        assert 20 < rate < 80  # paced by the cycle timer at ~50 fps
    with pytest.raises(CameraError):
        cam.read_latest(1000)


def test_stale_frames_are_refused() -> None:
    cam = TestPatternCamera(CameraConfig(width=32, height=24, fps=2))
    with cam:
        cam.read()
        time.sleep(0.05)
        with pytest.raises(StaleFrame, match="ms old"):
            cam.read_latest(max_age_ms=10)


def test_usb_camera_reads_a_video_file_as_rgb(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (80, 60))
    assert writer.isOpened()
    for i in range(10):
        rgb = pattern(80, 60, i)
        rgb[:, :, :] = (200, 30, 30)  # strong red, so a BGR/RGB swap would show
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    cam = UsbCamera(CameraConfig(width=40, height=30, fps=60), device=str(path))
    with cam:
        frames = [cam.read() for _ in range(15)]  # loops past the end of the file
    img = frames[-1].image
    assert img.shape == (30, 40, 3)
    r, g, b = img.reshape(-1, 3).mean(axis=0)
    assert r > 150 and g < 80 and b < 80


def test_usb_camera_missing_device_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="cannot open camera"):
        UsbCamera(CameraConfig(), device=str(tmp_path / "nothing.avi")).connect()


def test_picamera_off_a_pi_says_what_to_do() -> None:
    with pytest.raises(CameraError, match="works only on a Raspberry Pi") as err:
        PiCamera(CameraConfig()).connect()
    assert "test_pattern" in str(err.value)
