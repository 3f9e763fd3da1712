"""Driving a car by hand without the hub: keys from a terminal or a gamepad read through evdev (on
the car itself, like DonkeyCar's controllers), sent as ``cmd/drive`` over MQTT at a steady rate.

A terminal gives no key-up events, so keys step the command (↑/↓ throttle, ←/→ steering, space
stops, c centres the steering); a gamepad gives axes. Either way :class:`DriveSender` publishes the
current command ``hz`` times a second, which keeps the car's deadman alive, and neutral when it stops.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
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


class GamepadMapper:
    """Turns evdev events into ``state``: left stick x steers, right trigger (or left stick y)
    drives, left trigger reverses; the east button (B / circle) stops. ``axes`` is each absolute
    axis's ``evdev.AbsInfo`` (its range), as the device reports it."""

    def __init__(self, state: DriveState, axes: Mapping[int, Any]) -> None:
        from evdev import ecodes

        self.state = state
        self.axes = dict(axes)
        self.codes = ecodes
        self.triggers = {"forward": 0.0, "back": 0.0}

    def apply(self, event: Any) -> None:
        ec, state = self.codes, self.state
        if event.type == ec.EV_KEY and event.code == ec.BTN_EAST and event.value:
            self.neutral()
        if event.type != ec.EV_ABS or event.code not in self.axes:
            return
        a = self.axes[event.code]
        if event.code == ec.ABS_X:
            state.steering = axis_value(event.value, a.min, a.max)
        elif event.code == ec.ABS_Y:
            state.throttle = -axis_value(event.value, a.min, a.max)
        elif event.code in (ec.ABS_RZ, ec.ABS_Z):
            key = "forward" if event.code == ec.ABS_RZ else "back"
            self.triggers[key] = (event.value - a.min) / max(1, a.max - a.min)
            state.throttle = _clip(self.triggers["forward"] - self.triggers["back"])

    def neutral(self) -> None:
        self.state.steering = self.state.throttle = 0.0
        self.triggers = {"forward": 0.0, "back": 0.0}


def follow_gamepad(events: Iterable[Any], mapper: GamepadMapper, stop: threading.Event) -> str:
    """Apply ``events`` (``evdev.InputEvent``s) until ``stop``: ``"stopped"``. A read that fails
    (the pad unplugged or out of range: evdev raises ``OSError``) or a source that ends is
    ``"lost"``, with the command set to neutral first, so the sender stops the car at once."""
    try:
        for event in events:
            mapper.apply(event)
            if stop.is_set():
                return "stopped"
    except OSError:
        pass
    mapper.neutral()
    return "stopped" if stop.is_set() else "lost"


def device_events(device: Any, stop: threading.Event, wait_s: float = 0.1) -> Iterator[Any]:
    """An evdev device's events until ``stop`` (checked every ``wait_s``); raises ``OSError`` when
    the device goes away."""
    while not stop.is_set():
        if not select.select([device.fd], [], [], wait_s)[0]:
            continue
        try:
            yield from device.read()
        except BlockingIOError:  # woken with nothing to read
            continue


def read_gamepad(path: str, state: DriveState, stop: threading.Event) -> str:
    """Follow the evdev gamepad at ``path`` until ``stop`` (``"stopped"``) or until it goes away
    (``"lost"``, the command neutral)."""
    import evdev  # the car extra pulls it in on Linux
    from evdev import ecodes

    device = evdev.InputDevice(path)
    try:
        capabilities: dict[int, Any] = device.capabilities(absinfo=True)  # EV_ABS: (code, AbsInfo)
        axes: dict[int, Any] = dict(capabilities.get(ecodes.EV_ABS, []))
        return follow_gamepad(device_events(device, stop), GamepadMapper(state, axes), stop)
    finally:
        with contextlib.suppress(OSError):
            device.close()
