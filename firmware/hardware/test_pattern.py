"""A synthetic camera for the bench: a moving test pattern, no device needed.

Each frame shows colour bars, a bar moving across the image and the frame index encoded in the
first row of pixels (one byte per column, little-endian), so a test can tell frames apart and a
viewer sees motion. Paced by the shared cycle timer at the configured fps.
"""

import numpy as np
from numpy.typing import NDArray

from firmware.camera import CameraConfig
from firmware.hardware.threaded_camera import ThreadedCamera

_BARS = np.array(
    [[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0], [192, 0, 192], [192, 0, 0], [0, 0, 192]],
    dtype=np.uint8,
)


def pattern(width: int, height: int, index: int) -> NDArray[np.uint8]:
    cols = (np.arange(width) * len(_BARS) // width).astype(np.intp)
    img = np.repeat(_BARS[cols][None, :, :], height, axis=0)
    x = (index * 2) % width
    img[:, x : x + max(2, width // 32)] = 255
    stamp = np.frombuffer(int(index).to_bytes(8, "little"), dtype=np.uint8)
    img[0, : min(8, width), :] = stamp[: min(8, width), None]
    return img


def frame_index(image: NDArray[np.uint8]) -> int:
    """The index stamped into a test-pattern image."""
    return int.from_bytes(bytes(image[0, :8, 0]), "little")


class TestPatternCamera(ThreadedCamera):
    kind = "test_pattern"
    paced = True
    __test__ = False  # not a pytest class

    def __init__(self, config: CameraConfig) -> None:
        super().__init__(config)
        self._index = 0

    def _open(self) -> None:
        self._index = 0

    def _grab(self) -> NDArray[np.uint8]:
        img = pattern(self.config.width, self.config.height, self._index)
        self._index += 1
        return img

    def _close(self) -> None:
        pass
