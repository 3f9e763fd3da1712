"""A camera that captures in its own thread and keeps only the latest frame.

The control loop never waits on a device: :meth:`read_latest` returns whatever arrived last (or
raises :class:`StaleFrame`), while a capture thread pulls frames as fast as the device (or, for
synthetic sources, the shared :class:`CycleTimer`) delivers them.
"""

import logging
import threading
import time
from abc import abstractmethod

import numpy as np
from numpy.typing import NDArray

from firmware.camera import Camera, CameraConfig, CameraError, Frame, StaleFrame
from firmware.cycle_timer import CycleTimer

log = logging.getLogger(__name__)

# Consecutive capture failures after which the device counts as gone.
MAX_CONSECUTIVE_FAILURES = 30


def fit_image(image: NDArray[np.uint8], width: int, height: int) -> NDArray[np.uint8]:
    """Resize to ``width × height`` (area interpolation) unless it already is."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    import cv2

    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8)


class ThreadedCamera(Camera):
    """Base for cameras with a capture thread. Subclasses implement ``_open``, ``_grab``, ``_close``.

    ``paced`` sources (synthetic ones) are paced by a :class:`CycleTimer` at ``config.fps``; real
    devices block in ``_grab`` until their next frame.
    """

    paced = False

    def __init__(self, config: CameraConfig) -> None:
        super().__init__(config)
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.frames_captured = 0
        self.capture_errors = 0

    # --- subclass hooks -----------------------------------------------------------------------
    @abstractmethod
    def _open(self) -> None:
        """Open the device; raise :class:`CameraError` with a reason a user can act on."""

    @abstractmethod
    def _grab(self) -> NDArray[np.uint8]:
        """Return the next RGB image (any size; it is resized to the configured one)."""

    @abstractmethod
    def _close(self) -> None:
        """Release the device."""

    # --- Camera -------------------------------------------------------------------------------
    def connect(self) -> None:
        if self._thread is not None:
            return
        self._open()
        self._stop.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.kind}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        timer = CycleTimer(self.config.fps) if self.paced else None
        failures = 0
        index = 0
        while not self._stop.is_set():
            if timer is not None:
                timer.wait()
            try:
                image = self._grab()
            except Exception as exc:
                failures += 1
                self.capture_errors += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    log.error("%s camera failed %d times in a row: %s", self.kind, failures, exc)
                    with self._cond:
                        self._error = exc
                        self._cond.notify_all()
                    return
                time.sleep(0.01)
                continue
            failures = 0
            t = time.monotonic_ns()
            image = fit_image(image, self.config.width, self.config.height)
            frame = Frame(image=image, t_capture_ns=t, index=index)
            index += 1
            with self._cond:
                self._latest = frame
                self.frames_captured += 1
                self._cond.notify_all()

    def _check(self) -> None:
        if self._error is not None:
            raise CameraError(f"{self.kind} camera stopped delivering frames: {self._error}")
        if self._thread is None:
            raise CameraError(f"{self.kind} camera is not connected")

    def read(self) -> Frame:
        timeout = max(1.0, 5.0 / self.config.fps)
        with self._cond:
            self._check()
            last = self._latest.index if self._latest is not None else -1
            ok = self._cond.wait_for(
                lambda: self._error is not None or (self._latest is not None and self._latest.index != last),
                timeout,
            )
            self._check()
            if not ok or self._latest is None:
                raise CameraError(f"{self.kind} camera delivered no frame within {timeout:.1f}s")
            return self._latest

    def read_latest(self, max_age_ms: float) -> Frame:
        frame = self._latest
        if frame is None:
            self._check()
            raise StaleFrame(f"{self.kind} camera has no frame yet")
        age_ms = (time.monotonic_ns() - frame.t_capture_ns) / 1e6
        if age_ms > max_age_ms:
            self._check()
            raise StaleFrame(f"latest {self.kind} frame is {age_ms:.0f} ms old (limit {max_age_ms:.0f} ms)")
        return frame

    def disconnect(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=5.0)
        self._thread = None
        try:
            self._close()
        finally:
            with self._cond:
                self._latest = None
