"""The Raspberry Pi camera through picamera2 (libcamera), imported only when the camera opens."""

from typing import Any

import numpy as np
from numpy.typing import NDArray

from firmware.camera import CameraConfig, CameraError
from firmware.hardware.threaded_camera import ThreadedCamera

NOT_A_PI = (
    "picamera2 is not available ({reason}). The 'picamera' camera works only on a Raspberry Pi with "
    "libcamera: `sudo apt install python3-picamera2` and create the car's virtual environment with "
    "--system-site-packages. Elsewhere use camera.kind = 'usb' or 'test_pattern'."
)


class PiCamera(ThreadedCamera):
    """Raspberry Pi camera modules (v1-v3, HQ) via picamera2.

    ``RGB888`` in libcamera is stored B, G, R in memory, so the channels are flipped to RGB here.
    """

    kind = "picamera"

    def __init__(self, config: CameraConfig, camera_num: int = 0, hflip: bool = False, vflip: bool = False):
        super().__init__(config)
        self.camera_num = camera_num
        self.hflip = hflip
        self.vflip = vflip
        self._cam: Any = None

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2
        except Exception as exc:  # ImportError, or libcamera failing to load
            raise CameraError(NOT_A_PI.format(reason=exc)) from exc
        try:
            cam = Picamera2(self.camera_num)
            cfg = cam.create_video_configuration(
                main={"size": (self.config.width, self.config.height), "format": "RGB888"},
                controls={"FrameRate": float(self.config.fps)},
                buffer_count=2,
            )
            try:
                from libcamera import Transform

                cfg["transform"] = Transform(hflip=int(self.hflip), vflip=int(self.vflip))
            except ImportError:
                pass
            cam.configure(cfg)
            cam.start()
        except Exception as exc:
            raise CameraError(f"cannot open Pi camera {self.camera_num}: {exc}") from exc
        self._cam = cam

    def _grab(self) -> NDArray[np.uint8]:
        bgr = self._cam.capture_array("main")
        return np.ascontiguousarray(bgr[:, :, 2::-1])

    def _close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()
