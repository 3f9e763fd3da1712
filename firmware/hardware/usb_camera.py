"""A USB (UVC) camera through OpenCV. A video file path also works, which helps on the bench."""

from typing import Any

import numpy as np
from numpy.typing import NDArray

from firmware.camera import CameraConfig, CameraError
from firmware.hardware.threaded_camera import ThreadedCamera


class UsbCamera(ThreadedCamera):
    """OpenCV ``VideoCapture`` on ``device``: an index (0 → /dev/video0), a device path or a file.

    A file is played in a loop, paced at ``config.fps``.
    """

    kind = "usb"

    def __init__(self, config: CameraConfig, device: int | str = 0) -> None:
        super().__init__(config)
        self.device = device
        self._cap: Any = None
        self._is_file = False

    def _open(self) -> None:
        import cv2

        device: int | str = self.device
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        self._is_file = isinstance(device, str) and not device.startswith("/dev/")
        self.paced = self._is_file
        cap = cv2.VideoCapture(device) if self._is_file else cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            hint = (
                "check the path" if self._is_file else "is it plugged in, and is the user in group 'video'?"
            )
            raise CameraError(f"cannot open camera {self.device!r} ({hint})")
        if not self._is_file:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
            cap.set(cv2.CAP_PROP_FPS, self.config.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep latency low: no backlog of old frames
        self._cap = cap

    def _grab(self) -> NDArray[np.uint8]:
        import cv2

        ok, bgr = self._cap.read()
        if not ok and self._is_file:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise CameraError(f"camera {self.device!r} returned no frame")
        return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
