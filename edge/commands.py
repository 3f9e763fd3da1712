"""What the car hears: the fleet e-stop, models, and commands, answered on ``command_response``.

:class:`CommandHandler` routes each incoming MQTT message and runs commands through the
:class:`CarControl` interface the daemon implements (the same code path as its Python API).
:func:`apply_settings` is the all-or-nothing run-time ``config`` command; :class:`EStopStore`
keeps the last e-stop on disk so that it survives a reboot.
"""

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import aiomqtt

from edge.config import CarConfig, ConfigError
from edge.hotswap import ModelManager
from edge.loop import ControlLoop
from edge.mqtt import MqttLink
from edge.trust import Source
from infra.files import write_atomic
from schemas.errors import ContractError
from schemas.messages import (
    CarStatus,
    CommandResponse,
    ConfigCommand,
    DriveCommand,
    EStop,
    ModeCommand,
    RecordCommand,
    parse_command,
)
from schemas.topics import TopicKind, Topics

log = logging.getLogger(__name__)

# Settings a `config` command may change at run time, and where they live in CarConfig.
RUNTIME_SETTINGS = {
    "telemetry_hz": "publish.telemetry_hz",
    "preview_hz": "publish.preview_hz",
    "autopilot": "loop.autopilot",
    "autopilot_throttle": "loop.autopilot_throttle",
    "max_throttle": "loop.max_throttle",
    "deadman_ms": "loop.deadman_ms",
    "safety_rule": "detector.rule",
    "safety_action": "detector.action",
    "safety_distance_m": "detector.distance_m",
    "detector_every_n_ticks": "detector.every_n_ticks",
}


class DriveFreshness:
    """Drops drive commands that arrive later than the deadman after they were sent.

    A link that drops for less than the keepalive queues the joystick's commands, and they arrive
    together when it returns: followed, they would drive the car on a stick released seconds ago.
    The sender's clock need not agree with the car's: the smallest delay seen in the last
    ``window_s`` (clock offset plus the link's own latency) is the reference, and a command is stale
    when its delay exceeds that by more than the deadman. A sender's clock stepped backwards makes
    its commands stale until the step leaves the window."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = window_s
        self.stale = 0
        self._delays: deque[tuple[float, float]] = deque()  # (arrival, delay), delays increasing

    def fresh(self, sent_ts: float | None, max_age_s: float, now: float | None = None) -> bool:
        if sent_ts is None:
            return True  # a sender that says nothing of its time cannot be judged
        now = time.time() if now is None else now
        delay = now - sent_ts
        while self._delays and self._delays[0][0] < now - self.window_s:
            self._delays.popleft()
        while self._delays and self._delays[-1][1] >= delay:
            self._delays.pop()  # a later, smaller delay is the better reference for the window
        self._delays.append((now, delay))
        if delay - self._delays[0][1] <= max_age_s:
            return True
        self.stale += 1
        return False


class CarControl(Protocol):
    """What commands act on (the daemon)."""

    @property
    def loop(self) -> ControlLoop: ...

    def drive(self, steering: float, throttle: float) -> None: ...
    def set_mode(self, mode: Any) -> None: ...
    def set_estop(self, active: bool, reason: str = "") -> None: ...
    def start_recording(self, session: str | None = None) -> str: ...
    def stop_recording(self) -> tuple[str | None, int]: ...
    def configure(self, values: dict[str, Any]) -> dict[str, Any]: ...


class CommandHandler:
    """``link``, ``models`` and ``birth`` are read when a message arrives: they exist once the car
    has started, and messages arrive only after that."""

    def __init__(
        self,
        car: str,
        topics: Topics,
        control: CarControl,
        *,
        link: Callable[[], MqttLink],
        models: Callable[[], ModelManager],
        birth: Callable[[int], CarStatus],
        detectors: Callable[[], ModelManager] | None = None,
    ) -> None:
        self.car = car
        self.topics = topics
        self.control = control
        self._link = link
        self._models = models
        self._detectors = detectors
        self._birth = birth
        self.tasks: list[asyncio.Task[None]] = []
        self.drive_freshness = DriveFreshness()

    def on_message(self, message: aiomqtt.Message) -> None:
        arrival_ns = time.monotonic_ns()
        try:
            parsed = self.topics.parse(str(message.topic))
        except ContractError as exc:
            log.warning("ignoring message: %s", exc)
            return
        payload = bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else b""
        if parsed.kind is TopicKind.FLEET_ESTOP:
            estop = read_estop(payload)
            self.control.set_estop(estop.active, estop.reason)
        elif parsed.kind is TopicKind.CAR_MODEL:
            self._models().offer("car", payload, arrival_ns)
        elif parsed.kind is TopicKind.GROUP_MODEL:
            self._models().offer("group", payload, arrival_ns)
        elif parsed.kind in (TopicKind.CAR_DETECTOR, TopicKind.GROUP_DETECTOR) and self._detectors:
            source: Source = "car" if parsed.kind is TopicKind.CAR_DETECTOR else "group"
            self._detectors().offer(source, payload, arrival_ns)
        elif parsed.kind is TopicKind.COMMAND and parsed.command is not None:
            self.tasks.append(asyncio.create_task(self.handle(parsed.command, payload)))
            self.tasks = [t for t in self.tasks if not t.done()]

    async def handle(self, name: str, payload: bytes) -> None:
        """Run one command and answer it: every payload, however malformed, gets a response."""
        transaction = _transaction(payload)
        try:
            data = await self.apply(parse_command(name, payload))
            response = CommandResponse(status="ok", data=data, transaction=transaction, ts=time.time())
        except (ContractError, ConfigError, ValueError, RecursionError) as exc:
            response = _error(exc, transaction)
        except Exception as exc:  # a bug must cost one command, never the handler
            log.exception("command %s failed", name)
            response = _error(exc, transaction, prefix="internal error: ")
        if name == "drive" and response.status == "ok" and transaction is None:
            return  # drive commands stream at joystick rate; answer only when asked
        await self._link().publish(self.topics.command_response(self.car, name), response.to_json(), qos=1)

    async def apply(self, command: Any) -> dict[str, Any]:
        """Apply a parsed command; return the response data."""
        control = self.control
        if isinstance(command, DriveCommand):
            if not self.drive_freshness.fresh(command.ts, control.loop.deadman_s):
                return {"mode": control.loop.mode, "stale": True}
            control.drive(command.steering, command.throttle)
            return {"mode": control.loop.mode}
        if isinstance(command, ModeCommand):
            control.set_mode(command.mode)
            return {"mode": command.mode, "estop": control.loop.estop}
        if isinstance(command, RecordCommand):
            if command.action == "start":
                return {"session": control.start_recording(command.session)}
            session, frames = control.stop_recording()
            return {"session": session, "frames": frames}
        if isinstance(command, ConfigCommand):
            return control.configure(command.values)
        return {"bdseq": await self.rebirth()}

    async def rebirth(self) -> int | None:
        """Publish the birth message again (the ``rebirth`` command); return its bdseq."""
        link = self._link()
        if link.bdseq is not None:
            birth = self._birth(link.bdseq).to_json()
            await link.publish(self.topics.car_status(self.car), birth, retain=True)
        return link.bdseq


MAX_TRANSACTION = 128  # characters of a transaction id echoed back (as schemas allow)


def _transaction(payload: bytes) -> str | None:
    """The payload's ``transaction`` when it is a short string, else None (so the answer always builds).

    Read with a depth check first: ``json.loads`` recurses, and deep nesting must not escape as a
    RecursionError."""
    if payload.count(b"[") + payload.count(b"{") > 32 and _nesting(payload) > 32:
        return None
    try:
        found = json.loads(payload).get("transaction")
    except (ValueError, AttributeError, RecursionError):
        return None
    return found if isinstance(found, str) and len(found) <= MAX_TRANSACTION else None


def _nesting(payload: bytes) -> int:
    """An upper bound of the JSON's nesting depth (brackets inside strings count too: that is safe)."""
    depth = deepest = 0
    for byte in payload:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


def _error(exc: BaseException, transaction: str | None, prefix: str = "") -> CommandResponse:
    return CommandResponse(
        status="error", error=(prefix + str(exc))[:1000], transaction=transaction, ts=time.time()
    )


def read_estop(payload: bytes) -> EStop:
    """The fleet e-stop message; an empty (cleared retained) message releases it."""
    if not payload:
        return EStop(active=False, reason="cleared", ts=time.time())
    try:
        return EStop.from_json(payload)
    except ContractError as exc:
        # A malformed e-stop is treated as an e-stop: stopping is the safe reading.
        log.error("malformed e-stop message (%s): stopping", exc)
        return EStop(active=True, reason=f"malformed e-stop message: {exc}", ts=time.time())


class EStopStore:
    """The last fleet e-stop, kept on disk: one seen before a reboot holds until it is released."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "estop.json"

    def load(self) -> EStop | None:
        try:
            return EStop.from_json(self.path.read_bytes())
        except (OSError, ContractError):
            return None

    def save(self, active: bool, reason: str) -> None:
        write_atomic(self.path, EStop(active=active, reason=reason, ts=time.time()).to_json())


def apply_settings(
    config: CarConfig, loop: ControlLoop, values: dict[str, Any], pilots: list[str]
) -> tuple[CarConfig, dict[str, Any]]:
    """Change run-time settings (keys of RUNTIME_SETTINGS, or ``pilot``), all or nothing.
    Returns the new config and the settings now in force."""
    values = dict(values)
    pilot = values.pop("pilot", None)
    unknown = sorted(set(values) - set(RUNTIME_SETTINGS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; settable: {sorted([*RUNTIME_SETTINGS, 'pilot'])}")
    if pilot is not None and pilot != "manual":
        values["autopilot"] = pilot
    if "autopilot" in values and values["autopilot"] not in pilots:
        raise ValueError(f"unknown pilot {values['autopilot']!r}; available: {', '.join(pilots)}")
    new = config.with_values({RUNTIME_SETTINGS[k]: v for k, v in values.items()}, "config command")
    loop.set_autopilot(new.loop.autopilot)
    loop.set_tuning(
        autopilot_throttle=new.loop.autopilot_throttle,
        max_throttle=new.loop.max_throttle,
        deadman_ms=new.loop.deadman_ms,
    )
    if loop.detector is not None:
        loop.detector.configure(new.detector)
    if pilot == "manual":
        loop.set_mode("manual")
    elif pilot is not None:
        loop.set_mode("autopilot")
    return new, {k: _get(new, v) for k, v in RUNTIME_SETTINGS.items()}


def _get(config: CarConfig, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node
