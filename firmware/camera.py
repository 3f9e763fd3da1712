"""The camera interface every implementation follows (real, USB, simulated).

Images are RGB ``uint8`` arrays of shape ``(height, width, 3)``; ``t_capture_ns`` is
``time.monotonic_ns()`` at capture, so the control loop can tell how old a frame is.
"""

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


class CameraError(RuntimeError):
    """The camera cannot deliver (not connected, device gone, no frame yet)."""


class StaleFrame(CameraError):
    """The latest frame is older than the caller allows."""


@dataclass(frozen=True, slots=True)
class Frame:
    image: NDArray[np.uint8]
    t_capture_ns: int
    index: int


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """Common settings. ``width``/``height`` are what :meth:`Camera.read` returns."""

    width: int = 160
    height: int = 120
    fps: float = 30.0

    def __post_init__(self) -> None:
        if not (8 <= self.width <= 4096 and 8 <= self.height <= 4096):
            raise ValueError(f"camera size {self.width}×{self.height} is out of range")
        if not 0 < self.fps <= 240:
            raise ValueError(f"camera fps {self.fps} is out of range (0, 240]")


class Camera(ABC):
    """A source of RGB frames."""

    kind: str = "camera"

    def __init__(self, config: CameraConfig) -> None:
        self.config = config

    @abstractmethod
    def connect(self) -> None:
        """Open the device and start capturing. Raises :class:`CameraError` with a clear reason."""

    @abstractmethod
    def read(self) -> Frame:
        """Block until a new frame is captured and return it."""

    @abstractmethod
    def read_latest(self, max_age_ms: float) -> Frame:
        """Return the most recent frame without waiting; :class:`StaleFrame` if it is older than
        ``max_age_ms``."""

    async def async_read(self) -> Frame:
        """:meth:`read` without blocking the event loop."""
        return await asyncio.to_thread(self.read)

    @abstractmethod
    def disconnect(self) -> None:
        """Stop capturing and release the device. Safe to call twice."""

    def __enter__(self) -> "Camera":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
