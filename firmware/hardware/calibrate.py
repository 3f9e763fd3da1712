"""Interactive steering and throttle calibration (``paddock car calibrate``).

The wizard drives the real outputs while the user watches the wheels: for each point (steering
centre, full left, full right; throttle neutral, full forward, full reverse) it sets a pulse, and
the user nudges it until it looks right. Input and output are callbacks, so the command line uses
the terminal and tests use a script.

Keys at each step: a number sets that pulse width (µs); ``+``/``-`` move it by 10 µs, ``++``/``--``
by 50 µs; an empty line accepts; ``q`` aborts without saving.
"""

from collections.abc import Callable
from dataclasses import dataclass

from firmware.calibration import Calibration
from firmware.hardware.pulse import PulseActuators


class CalibrationAborted(Exception):
    pass


@dataclass(frozen=True)
class Step:
    channel: str  # "steering" | "throttle"
    field: str  # min_us | center_us | max_us
    prompt: str


STEPS = (
    Step("steering", "center_us", "Steering CENTRE: adjust until the front wheels point straight ahead"),
    Step(
        "steering", "min_us", "Steering FULL LEFT: adjust until the wheels reach their left stop, no buzzing"
    ),
    Step("steering", "max_us", "Steering FULL RIGHT: adjust until the wheels are at their right stop"),
    Step("throttle", "center_us", "Throttle NEUTRAL (car on a stand!): adjust until the wheels stand still"),
    Step("throttle", "max_us", "Throttle FULL FORWARD: adjust until the wheels spin forward at full speed"),
    Step("throttle", "min_us", "Throttle FULL REVERSE: adjust until the wheels spin backwards at full speed"),
)


class CalibrationWizard:
    def __init__(
        self,
        actuators: PulseActuators,
        ask: Callable[[str], str],
        say: Callable[[str], None],
        small_step_us: float = 10.0,
        large_step_us: float = 50.0,
    ) -> None:
        self.actuators = actuators
        self.ask = ask
        self.say = say
        self.small = small_step_us
        self.large = large_step_us

    def run(self) -> Calibration:
        """Walk through every step; return the new calibration (the caller saves it)."""
        cal = self.actuators.calibration.model_copy(deep=True)
        self.say(
            "Calibration: type a pulse width in µs, +/- (10 µs), ++/-- (50 µs), Enter to accept, q to quit."
        )
        try:
            for step in STEPS:
                cal = self._adjust(step, cal)
                # Return to neutral between steps so the car never keeps moving.
                self.actuators.set_pulse_us("steering", cal.steering.center_us)
                self.actuators.set_pulse_us("throttle", cal.throttle.center_us)
            cal = self._limits(cal)
        finally:
            self.actuators.set_pulse_us("throttle", cal.throttle.center_us)
        self.actuators.calibration = cal
        return cal

    def _adjust(self, step: Step, cal: Calibration) -> Calibration:
        if getattr(cal, step.channel).reverse and step.field != "center_us":
            # A reversed channel reaches -1 at max_us and +1 at min_us.
            step = Step(step.channel, "max_us" if step.field == "min_us" else "min_us", step.prompt)
        self.say(step.prompt)
        pulse = float(getattr(getattr(cal, step.channel), step.field))
        while True:
            self.actuators.set_pulse_us(step.channel, pulse)
            answer = self.ask(f"{step.channel}.{step.field} = {pulse:.0f} µs").strip().lower()
            if answer == "":
                try:
                    return _with(cal, step, pulse)
                except ValueError as exc:
                    self.say(str(exc))
                    continue
            if answer == "q":
                raise CalibrationAborted("calibration aborted; nothing saved")
            moves = {"+": self.small, "-": -self.small, "++": self.large, "--": -self.large}
            if answer in moves:
                pulse += moves[answer]
            else:
                try:
                    pulse = float(answer)
                except ValueError:
                    self.say(f"not understood: {answer!r}")
                    continue
            pulse = max(500.0, min(2500.0, pulse))

    def _limits(self, cal: Calibration) -> Calibration:
        for channel, name, current in (
            ("steering", "limit", cal.steering.limit),
            ("throttle", "limit_forward", cal.throttle.limit_forward),
            ("throttle", "limit_reverse", cal.throttle.limit_reverse),
        ):
            while True:
                answer = self.ask(f"{channel}.{name} (0..1, Enter keeps {current})").strip().lower()
                if answer == "q":
                    raise CalibrationAborted("calibration aborted; nothing saved")
                if answer == "":
                    break
                try:
                    value = float(answer)
                except ValueError:
                    self.say(f"not a number: {answer!r}")
                    continue
                if not 0 <= value <= 1:
                    self.say("a limit must be between 0 and 1")
                    continue
                ch = getattr(cal, channel).model_copy(update={name: value})
                cal = cal.model_copy(update={channel: ch})
                break
        return Calibration.model_validate(cal.model_dump())


def _with(cal: Calibration, step: Step, value: float) -> Calibration:
    """Set one pulse width, keeping the calibration valid (min < centre < max) along the way."""
    ch = getattr(cal, step.channel).model_dump()
    ch[step.field] = value
    if not ch["min_us"] < ch["center_us"] < ch["max_us"]:
        raise ValueError(
            f"{step.channel}: {step.field} = {value:.0f} µs breaks min_us < center_us < max_us "
            f"({ch['min_us']:.0f} / {ch['center_us']:.0f} / {ch['max_us']:.0f}); if the direction is "
            "swapped, set `reverse = true` and calibrate again"
        )
    data = cal.model_dump()
    data[step.channel] = ch
    return Calibration.model_validate(data)
