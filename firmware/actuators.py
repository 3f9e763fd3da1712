"""The actuator interface: steering and throttle in [-1, 1].

Implementations apply their calibration (trim, limits, reverse) and return the action they actually
applied, after clipping, so the car reports and records what the wheels got, not what was asked.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Applied:
    steering: float
    throttle: float


class Actuators(ABC):
    kind: str = "actuators"

    @abstractmethod
    def connect(self) -> None:
        """Take control of the outputs, starting at neutral."""

    @abstractmethod
    def apply(self, steering: float, throttle: float) -> Applied:
        """Command steering and throttle (each in [-1, 1]); return what was applied."""

    def stop(self) -> Applied:
        """Neutral steering, zero throttle."""
        return self.apply(0.0, 0.0)

    @abstractmethod
    def disconnect(self) -> None:
        """Return to neutral and release the outputs. Safe to call twice."""

    def __enter__(self) -> "Actuators":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


def clip_unit(value: float) -> float:
    """Clip to [-1, 1]; NaN becomes 0 (a NaN must never reach a servo)."""
    if value != value:  # NaN
        return 0.0
    return max(-1.0, min(1.0, float(value)))
