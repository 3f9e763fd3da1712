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
