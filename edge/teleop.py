"""Driving a car by hand without the hub: keys from a terminal or a gamepad read through evdev (on
the car itself, like DonkeyCar's controllers), sent as ``cmd/drive`` over MQTT at a steady rate.

A terminal gives no key-up events, so keys step the command (↑/↓ throttle, ←/→ steering, space
stops, c centres the steering); a gamepad gives axes. Either way :class:`DriveSender` publishes the
current command ``hz`` times a second, which keeps the car's deadman alive, and neutral when it stops.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from schemas.messages import DriveCommand
from schemas.mqtt_url import BrokerUrl
from schemas.topics import Topics

KEYS = {
    "up": ("throttle", +1), "w": ("throttle", +1), "down": ("throttle", -1), "s": ("throttle", -1),
    "left": ("steering", -1), "a": ("steering", -1), "right": ("steering", +1), "d": ("steering", +1),
}  # fmt: skip
ARROWS = {"\x1b[A": "up", "\x1b[B": "down", "\x1b[C": "right", "\x1b[D": "left"}


@dataclass
class DriveState:
    """The command being sent. Throttle is scaled by ``max_throttle``; steps are per key press."""

    max_throttle: float = 0.5
    step: float = 0.1
    steering: float = 0.0
    throttle: float = 0.0  # -1..1 before scaling

    def key(self, name: str) -> bool:
        """Apply one key; False for the quit keys (q, Ctrl-C)."""
        if name in ("q", "\x03"):
            return False
        if name == " ":
            self.steering = self.throttle = 0.0
        elif name == "c":
            self.steering = 0.0
        elif name in KEYS:
            axis, sign = KEYS[name]
            setattr(self, axis, _clip(getattr(self, axis) + sign * self.step))
        return True

    def command(self) -> tuple[float, float]:
        return _clip(self.steering), _clip(self.throttle * self.max_throttle)


def _clip(v: float) -> float:
    return max(-1.0, min(1.0, round(v, 6)))


def axis_value(value: int, minimum: int, maximum: int, deadzone: float = 0.06) -> float:
    """An evdev absolute axis as -1..1 (centre 0), with a dead zone around the centre."""
    if maximum <= minimum:
        return 0.0
    v = 2.0 * (value - minimum) / (maximum - minimum) - 1.0
    return 0.0 if abs(v) < deadzone else _clip(v)


class DriveSender:
    """Publishes ``state``'s command on ``cars/{car}/cmd/drive`` ``hz`` times a second (paho, QoS 0)."""

    def __init__(
        self, broker: str, car: str, state: DriveState, *, hz: float = 10.0, prefix: str = "paddock"
    ):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.url = BrokerUrl.parse(broker)
        self.topic = Topics(prefix).command(car, "drive")
        self.state = state
        self.period = 1.0 / hz
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client: Any = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"paddock-drive-{car}-{time.time_ns()}"
        )
        if self.url.username:
            self.client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            self.client.tls_set()

    def start(self) -> DriveSender:
        self.client.connect(self.url.host, self.url.port, keepalive=10)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="drive-sender", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._publish(*self.state.command())
            next_at += self.period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _publish(self, steering: float, throttle: float) -> None:
        cmd = DriveCommand(steering=steering, throttle=throttle, ts=time.time())
        self.client.publish(self.topic, cmd.to_json(), qos=0)
        self.sent += 1

    def stop(self) -> None:
        """Stop sending, then send neutral (twice: QoS 0 may lose one) before disconnecting."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        for _ in range(2):
            self._publish(0.0, 0.0)
        time.sleep(0.05)
        self.client.disconnect()
        self.client.loop_stop()


def read_gamepad(path: str, state: DriveState, stop: threading.Event) -> None:
    """Follow an evdev gamepad until ``stop``: left stick x steers, right trigger (or left stick y)
    drives, left trigger reverses; the east button (B / circle) stops."""
    import evdev  # the car extra does not pull it in: pip install evdev
    from evdev import ecodes

    device = evdev.InputDevice(path)
    info = {code: device.absinfo(code) for code, _ in device.capabilities().get(ecodes.EV_ABS, [])}
    triggers = {"forward": 0.0, "back": 0.0}
    while not stop.is_set():
        event = device.read_one()
        if event is None:
            time.sleep(0.005)
            continue
        if event.type == ecodes.EV_KEY and event.code == ecodes.BTN_EAST and event.value:
            state.steering = state.throttle = 0.0
        if event.type != ecodes.EV_ABS or event.code not in info:
            continue
        a = info[event.code]
        if event.code == ecodes.ABS_X:
            state.steering = axis_value(event.value, a.min, a.max)
        elif event.code == ecodes.ABS_Y:
            state.throttle = -axis_value(event.value, a.min, a.max)
        elif event.code in (ecodes.ABS_RZ, ecodes.ABS_Z):
            key = "forward" if event.code == ecodes.ABS_RZ else "back"
            triggers[key] = (event.value - a.min) / max(1, a.max - a.min)
            state.throttle = _clip(triggers["forward"] - triggers["back"])
