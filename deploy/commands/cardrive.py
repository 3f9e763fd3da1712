"""``paddock car drive``: drive a car by hand from a terminal, or from a gamepad on the car (evdev),
with no hub: drive commands go straight to the car over MQTT. Joins ``paddock car`` (defined in
:mod:`deploy.commands.car`); this module only adds to that group."""

from __future__ import annotations

import os
import select
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from deploy.commands.car import car_app
from deploy.errors import UserError, WorkFailed
from deploy.options import broker_option

ESC_TIMEOUT_S = 0.02


@car_app.command("drive", short_help="Drive a car by hand: keyboard here, or a gamepad (evdev) on the car.")
def drive(
    car: Annotated[str, typer.Option("--car", help="The car's id.")],
    broker: Annotated[str, broker_option("The car's broker.")] = "mqtt://127.0.0.1:1883",
    gamepad: Annotated[
        Path | None,
        typer.Option(help="A gamepad's evdev device, e.g. /dev/input/event3 (needs the evdev package)."),
    ] = None,
    max_throttle: Annotated[float, typer.Option(min=0.05, max=1.0, help="Full stick or key throttle.")] = 0.5,
    hz: Annotated[
        float, typer.Option(min=4, max=50, help="Drive commands per second (the deadman needs >= 4).")
    ] = 10,
    topic_prefix: Annotated[str, typer.Option(help="The fleet's topic prefix.")] = "paddock",
) -> None:
    """Keys: ↑/↓ or w/s step the throttle, ←/→ or a/d the steering, c centres, space stops, q quits.
    Commands are sent ``--hz`` times a second so the car's deadman stays alive; quitting, Ctrl-C or
    a lost link stop the car (neutral is sent; without it the deadman stops it within its time).
    The car must be in manual mode."""
    from schemas.ids import check_car_id

    check_car_id(car)
    if gamepad is None and not sys.stdin.isatty():
        raise UserError("paddock car drive reads keys from a terminal: run it in one, or give --gamepad")
    from edge.teleop import DriveSender, DriveState

    state = DriveState(max_throttle=max_throttle)
    try:
        sender = DriveSender(broker, car, state, hz=hz, prefix=topic_prefix).start()
    except OSError as exc:
        raise UserError(f"cannot reach the broker at {broker}: {exc}") from None
    try:
        if gamepad is not None:
            _with_gamepad(str(gamepad), state)
        else:
            _with_keys(state, sender.topic)
    finally:
        sender.stop()
        typer.echo(f"\nstopped; {sender.sent} drive commands sent")


def _with_gamepad(path: str, state: object) -> None:
    from edge.teleop import DriveState, read_gamepad

    assert isinstance(state, DriveState)
    try:
        import evdev  # noqa: F401
    except ImportError:
        raise UserError("--gamepad needs the evdev package (the car extra has it on Linux)") from None
    if not os.path.exists(path):
        raise UserError(f"no such input device: {path}")
    typer.echo(f"driving from {path}; Ctrl-C stops")
    stop = threading.Event()
    try:
        ended = read_gamepad(path, state, stop)
    except PermissionError:
        raise UserError(f"cannot read {path}: add this user to the input group") from None
    except OSError as exc:
        raise UserError(f"cannot read {path} as an input device: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        stop.set()
        return
    if ended == "lost":
        raise WorkFailed(f"the gamepad at {path} went away: the car was stopped")


def _with_keys(state: object, topic: str) -> None:
    import termios
    import tty

    from edge.teleop import ARROWS, DriveState

    assert isinstance(state, DriveState)
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    typer.echo(f"sending to {topic}: ↑↓ throttle, ←→ steering, c centre, space stop, q quit")
    try:
        tty.setcbreak(fd)
        while True:
            key = _read_key(fd, ARROWS)
            if not state.key(key):
                return
            steering, throttle = state.command()
            sys.stdout.write(f"\rsteering {steering:+.2f}  throttle {throttle:+.2f}   ")
            sys.stdout.flush()
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_key(fd: int, arrows: dict[str, str]) -> str:
    ch = os.read(fd, 1).decode(errors="ignore")
    if ch != "\x1b":
        return ch.lower()
    seq = ch
    while len(seq) < 3 and select.select([fd], [], [], ESC_TIMEOUT_S)[0]:
        seq += os.read(fd, 1).decode(errors="ignore")
    return arrows.get(seq, "")


JOINS = "car"
"""The group these commands belong to (``paddock car --help`` lists them)."""


def register(app: typer.Typer) -> None:
    """Nothing to add at the top: ``drive`` joined ``paddock car`` when this module was imported."""
