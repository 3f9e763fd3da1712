"""``paddock car drive``: keys step the command, axes map to -1..1, and the sender keeps the deadman
alive at a steady rate and ends with neutral — run in a real terminal (a pty) against Mosquitto."""

import itertools
import json
import os
import pty
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from edge.teleop import DriveState, axis_value
from schemas.mqtt_url import BrokerUrl
from schemas.topics import Topics


def test_keys_step_and_clip_the_command() -> None:
    state = DriveState(max_throttle=0.5, step=0.25)
    for key in ("up", "up", "right", "w", "w", "w", "w"):
        assert state.key(key)
    assert state.command() == (0.25, 0.5)  # throttle clipped at 1 before scaling
    state.key("c")
    assert state.command() == (0.0, 0.5)
    state.key(" ")
    assert state.command() == (0.0, 0.0)
    assert not state.key("q")


def test_gamepad_axes_centre_at_zero_with_a_dead_zone() -> None:
    assert axis_value(0, -32768, 32767) == 0.0
    assert axis_value(32767, -32768, 32767) == 1.0
    assert axis_value(-32768, -32768, 32767) == -1.0
    assert axis_value(128, 0, 255) == 0.0  # 0..255 pads centre at 128
    assert 0.45 < axis_value(192, 0, 255) < 0.55


def listen(url: str, topic: str) -> tuple[list[tuple[float, dict[str, Any]]], Any]:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    broker = BrokerUrl.parse(url)
    got: list[tuple[float, dict[str, Any]]] = []
    ready = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"teleop-test-{time.time_ns()}")
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=0)
    client.on_subscribe = lambda *_a: ready.set()
    client.on_message = lambda _c, _u, m: got.append((time.monotonic(), json.loads(m.payload)))
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert ready.wait(10)
    return got, client


def test_paddock_car_drive_in_a_terminal(mosquitto: Any) -> None:
    got, client = listen(mosquitto.url, Topics("tdrive").command("car-9", "drive"))
    leader, follower = pty.openpty()
    env = {**os.environ, "PADDOCK_BROKER": mosquitto.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "car", "drive", "--car", "car-9", "--topic-prefix", "tdrive"],
        stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # the command line imports every room: slow on a busy machine
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got, "no drive command arrived"
        for key in (b"\x1b[A", b"\x1b[A", b"\x1b[C"):
            os.write(leader, key)
            time.sleep(0.3)
        time.sleep(1.0)
        os.write(leader, b"q")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
        os.close(follower)
    time.sleep(0.3)
    client.disconnect()
    client.loop_stop()
    commands = [c for _, c in got]
    assert {"steering": 0.1, "throttle": 0.1} in [
        {k: c[k] for k in ("steering", "throttle")} for c in commands
    ]
    assert commands[-1]["throttle"] == 0.0 and commands[-1]["steering"] == 0.0
    moving = [t for t, c in got if c["throttle"] > 0]
    gaps = [b - a for a, b in itertools.pairwise(moving)]
    assert max(gaps) < 0.25, f"a gap of {max(gaps):.3f} s would trip the 250 ms deadman"


# --- the gamepad: real evdev events (this machine has no /dev/uinput for a virtual pad) ---------------
def pad_axes() -> dict[int, Any]:
    """What an Xbox-style pad reports: sticks -32768..32767, triggers 0..1023."""
    from evdev import AbsInfo, ecodes

    stick = AbsInfo(value=0, min=-32768, max=32767, fuzz=16, flat=128, resolution=0)
    trigger = AbsInfo(value=0, min=0, max=1023, fuzz=0, flat=0, resolution=0)
    return {ecodes.ABS_X: stick, ecodes.ABS_Y: stick, ecodes.ABS_Z: trigger, ecodes.ABS_RZ: trigger}


def event(kind: str, code: str, value: int) -> Any:
    from evdev import InputEvent, ecodes

    now = time.time()
    return InputEvent(int(now), int(now % 1 * 1e6), getattr(ecodes, kind), getattr(ecodes, code), value)


def test_gamepad_events_map_to_steering_and_throttle() -> None:
    from evdev import categorize

    from edge.teleop import GamepadMapper

    state = DriveState(max_throttle=0.5)
    pad = GamepadMapper(state, pad_axes())
    steer = event("EV_ABS", "ABS_X", -16384)
    assert "ABS_X" in str(categorize(steer))  # a real evdev event, as a device's read() gives
    for e in (steer, event("EV_ABS", "ABS_RZ", 1023), event("EV_SYN", "SYN_REPORT", 0)):
        pad.apply(e)
    steering, throttle = state.command()
    assert steering == pytest.approx(-0.5, abs=0.01) and throttle == 0.5  # full trigger × max throttle
    pad.apply(event("EV_ABS", "ABS_Z", 512))  # the left trigger takes half back
    assert state.command()[1] == pytest.approx(0.25, abs=0.01)
    pad.apply(event("EV_ABS", "ABS_X", 100))  # inside the dead zone
    pad.apply(event("EV_ABS", "ABS_Y", -32768))  # left stick up drives too
    assert state.command() == (0.0, 0.5)
    pad.apply(event("EV_ABS", "ABS_HAT0X", 1))  # an axis it does not use
    pad.apply(event("EV_KEY", "BTN_EAST", 1))  # B stops
    assert state.command() == (0.0, 0.0)


def test_a_gamepad_drives_a_simulated_car_and_losing_it_stops_the_car(mosquitto: Any, tmp_path: Any) -> None:
    """The pad holds the trigger for longer than the deadman without a new event (the sender keeps the
    car going), then goes away (evdev's read raises ENODEV): the car stops."""
    import asyncio
    import errno

    from edge.teleop import DriveSender, GamepadMapper, follow_gamepad
    from tests.edge.harness import RecordingDaemon, sim_car_config

    car = "pad-car"
    realtime = {"clock": "realtime", "speedup": 1.0}
    cfg = sim_car_config(
        tmp_path, mosquitto.url, car=car, sim=realtime, loop={"start_mode": "manual", "deadman_ms": 250}
    )
    held = threading.Event()
    release = threading.Event()

    def pad() -> Any:
        yield event("EV_ABS", "ABS_RZ", 800)
        yield event("EV_ABS", "ABS_X", 8000)
        held.set()
        release.wait(10)  # a real pad sends nothing while the trigger is held still
        raise OSError(errno.ENODEV, "No such device")

    async def scenario() -> tuple[list[Any], str, Any, float]:
        daemon = RecordingDaemon(cfg)
        async with daemon:
            state = DriveState(max_throttle=0.5)
            sender = DriveSender(mosquitto.url, car, state, hz=10, prefix="paddock").start()
            stop = threading.Event()
            following = asyncio.create_task(
                asyncio.to_thread(follow_gamepad, pad(), GamepadMapper(state, pad_axes()), stop)
            )
            try:
                await asyncio.to_thread(held.wait, 10)
                await asyncio.sleep(1.2)  # five deadman periods with no new event from the pad
                holding = list(daemon.ticks)
                release.set()
                lost_at = time.monotonic()
                ended = await following
                while daemon.loop.last is None or daemon.loop.last.throttle != 0:
                    assert time.monotonic() - lost_at < 3, "the car did not stop"
                    await asyncio.sleep(0.01)
                stopped = daemon.loop.last
                return holding, ended, stopped, (time.monotonic() - lost_at) * 1000
            finally:
                sender.stop()

    holding, ended, stopped, stopped_ms = asyncio.run(scenario())
    driven = [t for t in holding if t.throttle > 0]
    assert driven, "the pad never moved the car"
    tail = [t for t in holding if t.t_ns >= driven[0].t_ns]
    assert all(t.throttle > 0 and t.reason != "deadman" for t in tail), "the deadman tripped while held"
    assert (tail[-1].t_ns - driven[0].t_ns) / 1e9 > 1.0
    assert driven[-1].throttle == pytest.approx(0.5 * 800 / 1023, abs=0.01) and driven[-1].steering > 0.2
    assert ended == "lost" and stopped.reason != "deadman", "stopped by the neutral command, not the deadman"
    print(f"\ngamepad: {len(tail)} ticks past the deadman; stopped {stopped_ms:.0f} ms after the pad left")


def test_an_unreadable_gamepad_is_one_clear_error() -> None:
    from deploy.commands.cardrive import _with_gamepad
    from deploy.errors import UserError

    with pytest.raises(UserError, match="no such input device"):
        _with_gamepad("/dev/input/nothere", DriveState())
    with pytest.raises(UserError, match="cannot read /dev/null as an input device"):
        _with_gamepad("/dev/null", DriveState())
