"""Outputs switched off: for bench runs with a camera only, or a dry run of a new config."""

from firmware.actuators import Actuators, Applied, clip_unit


class NullActuators(Actuators):
    """Drives nothing; reports the clipped command as applied."""

    kind = "none"

    def connect(self) -> None:
        pass

    def apply(self, steering: float, throttle: float) -> Applied:
        return Applied(clip_unit(steering), clip_unit(throttle))

    def disconnect(self) -> None:
        pass
