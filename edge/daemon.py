"""The car daemon: body + control loop + recorder + model manager + MQTT, with a clean shutdown.

Use it from the command line (``paddock car run``) or embed it::

    config = CarConfig(car={"id": "car-1"}, broker={"url": "mqtt://127.0.0.1:1883"}, ...)
    async with CarDaemon(config, body=my_body) as car:
        car.set_autopilot("expert"); car.set_mode("autopilot")
        session = car.start_recording()
        await car.run(stop_event)            # until stop_event is set

Leaving the ``async with`` stops the loop (neutral outputs), ends the recording, gives the spool
``recorder.shutdown_flush_s`` to drain (the rest stays on disk for the next start), publishes the
death, disconnects and joins every thread it started.
"""

import asyncio
import contextlib
import gc
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import schemas
from edge.body import build_body
from edge.config import CarConfig, ConfigError
from edge.loop import ControlLoop, TickResult
from edge.models import ModelCache, ModelManager
from edge.mqtt import BdseqStore, MqttLink
from edge.pilots import Pilot, pilot_plugins
from edge.queues import DropQueue
from edge.recorder import FrameSeq, Recorder, encode_jpeg, frame_record
from edge.runtimes import preload as preload_runtimes
from edge.spool import ForwardSpool, SpoolRecord
from edge.systemd import Notifier
from firmware.body import Body
from firmware.cycle_timer import CycleTimer
from firmware.sensors import SensorReading
from infra.files import write_atomic
from schemas.errors import ContractError
from schemas.messages import (
    EVENT_ADAPTER,
    CameraInfo,
    CarStatus,
    CommandResponse,
    ConfigCommand,
    DriveCommand,
    EStop,
    ModeCommand,
    ModelState,
    RecordCommand,
    Telemetry,
    parse_command,
)
from schemas.payloads import encode_frame
from schemas.signing import load_public_key
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
}


@dataclass(slots=True)
class _Preview:
    seq: int
    result: TickResult
    model: str | None


class CarDaemon:
    def __init__(
        self,
        config: CarConfig,
        *,
        body: Body | None = None,
        pilots: dict[str, Pilot] | None = None,
        public_key: Ed25519PublicKey | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.topics = Topics(config.broker.prefix)
        self.car = config.car.id
        self.body: Body | None = body
        self._extra_pilots = dict(pilots or {})
        self._public_key = public_key
        self.notifier = notifier or Notifier()
        self.frame_seq = FrameSeq()
        self._telemetry_seq = 0
        self._event_seq = 0
        self._events: deque[tuple[int, bytes]] = deque()
        self.events_dropped = 0
        self._events_ready = asyncio.Event()
        self.event_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.preview_queue: DropQueue[_Preview] = DropQueue(2, "preview")
        self._last_preview_ns = 0
        self._heartbeat = time.monotonic()
        self._first_tick = asyncio.Event()
        self._first_tick_seen = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._link_task: asyncio.Task[None] | None = None
        self._spool_data = asyncio.Event()
        self.sensor_reading = SensorReading()
        self._started = False
        self._closed = False
        self._aloop: asyncio.AbstractEventLoop | None = None

    # --- start ------------------------------------------------------------------------------------
    async def __aenter__(self) -> "CarDaemon":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def _load_public_key(self) -> Ed25519PublicKey | None:
        if self._public_key is not None:
            return self._public_key
        m = self.config.models
        if m.public_key is None:
            if not m.allow_unsigned:
                log.warning("no models.public_key: every model sent to this car will be rejected")
            return None
        if not m.public_key.exists():
            if m.allow_unsigned:
                log.warning("models.public_key %s not found; accepting unsigned models only", m.public_key)
                return None
            raise ConfigError(
                f"models.public_key: {m.public_key} not found (copy the hub's public key there, or set "
                "models.allow_unsigned = true for development)"
            )
        try:
            return load_public_key(m.public_key)
        except ContractError as exc:
            raise ConfigError(f"models.public_key: {m.public_key}: {exc}") from None

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._aloop = asyncio.get_running_loop()
        cfg = self.config
        public_key = self._load_public_key()
        await asyncio.to_thread(cfg.state_dir.mkdir, parents=True, exist_ok=True)
        self.spool = await asyncio.to_thread(
            ForwardSpool,
            cfg.spool_dir,
            int(cfg.recorder.max_spool_mb * 1024 * 1024),
            int(cfg.recorder.segment_mb * 1024 * 1024),
            cfg.recorder.fsync_interval_s,
        )
        self.spool.on_append = self._spool_appended
        self.cache = ModelCache(cfg.model_cache_dir, keep=cfg.models.keep)
        await asyncio.to_thread(preload_runtimes, list(cfg.models.preload_runtimes))
        if self.body is None:
            self.body = build_body(cfg)
        body = self.body
        await asyncio.to_thread(body.connect)
        try:
            # A lockstep simulator may tick faster than real time; its world still advances one
            # tick period per tick.
            speedup = cfg.sim.speedup if cfg.is_sim and cfg.sim.clock == "lockstep" else 1.0
            self.loop = ControlLoop(
                body,
                cfg.loop,
                sink=self,
                on_replaced=self._retire_pilot,
                timer=CycleTimer(cfg.loop.hz * speedup),
            )
            # An e-stop seen before a reboot holds until the fleet releases it.
            saved = await asyncio.to_thread(self._load_estop)
            if saved is not None and saved.active:
                self.loop.set_estop(True, saved.reason)
                log.warning("e-stop still active from before the restart: %s", saved.reason)
            self.recorder = Recorder(
                self.car,
                self.spool,
                self.frame_seq,
                jpeg_quality=cfg.recorder.jpeg_quality,
                queue_frames=cfg.recorder.queue_frames,
                on_event=self._recorder_event,
            )
            self.recorder.start()
            self._install_pilots(body)
            budget = cfg.models.smoke_latency_ms or 0.8 * 1000.0 / cfg.loop.hz
            self.models = ModelManager(
                self.loop,
                self.cache,
                public_key=public_key,
                allow_unsigned=cfg.models.allow_unsigned,
                max_bytes=int(cfg.models.max_model_mb * 1024 * 1024),
                threads=cfg.models.threads,
                warmup_runs=cfg.models.warmup_runs,
                max_latency_ms=budget,
                download_timeout_s=cfg.models.download_timeout_s,
                latest_frame=self._latest_image,
                on_event=self.emit,
                on_state=self._model_state_changed,
            )
            await self.models.load_cached()
            self.link = MqttLink(
                cfg,
                self.topics,
                bdseq=BdseqStore(cfg.state_dir / "bdseq"),
                birth=lambda n: self._status("online", n),
                death=lambda n: self._status("offline", n),
                on_message=self._on_message,
                session_tasks=[
                    self._publish_model_state_on_connect,
                    self._publish_events,
                    self._publish_telemetry,
                    self._publish_preview,
                    self._send_spool,
                ],
                inflight=cfg.recorder.inflight,
            )
            # Latency: the control thread waits at most this long for the GIL, and what exists
            # after start-up is never scanned by the garbage collector again.
            sys.setswitchinterval(cfg.loop.gil_switch_interval_ms / 1000.0)
            gc.freeze()
            self.loop.start()
            self._link_task = asyncio.create_task(self.link.run(), name=f"mqtt-{self.car}")
            self._tasks += [
                asyncio.create_task(self.models.run(), name="models"),
                asyncio.create_task(self._heartbeat_task(), name="heartbeat"),
                asyncio.create_task(self._sensor_task(), name="sensors"),
            ]
            await asyncio.wait_for(self._first_tick.wait(), timeout=10.0)
        except BaseException:
            await self.shutdown()
            raise
        self.notifier.ready(f"driving at {cfg.loop.hz:g} Hz")
        log.info("car %s running at %g Hz (model %s)", self.car, cfg.loop.hz, self.model_ref or "none")

    def _install_pilots(self, body: Body) -> None:
        if "expert" not in self._extra_pilots and body.kind == "sim":
            from edge.sim import ExpertPilot, SimCarBody

            assert isinstance(body, SimCarBody)
            sim = self.config.sim
            self._extra_pilots["expert"] = ExpertPilot(
                body, noise_std=sim.expert_noise, noise_time_s=sim.expert_noise_time_s, seed=sim.seed
            )
        for name, pilot in self._extra_pilots.items():
            self.loop.install_pilot(name, pilot)
        for name, factory in pilot_plugins().items():
            if name in self._extra_pilots:
                continue
            try:
                pilot = factory(body)
            except Exception as exc:  # e.g. the expert needs a simulated body
                log.debug("pilot plugin %s not available here: %s", name, exc)
                continue
            if pilot is not None:
                self.loop.install_pilot(name, pilot)
                self._extra_pilots[name] = pilot

    @property
    def pilots(self) -> list[str]:
        return ["model", *self._extra_pilots]

    # --- the control loop's sink (control thread) ----------------------------------------------------
    def on_tick(self, result: TickResult) -> None:
        self.recorder.offer(result, result.pilot)
        hz = self.config.publish.preview_hz
        if (
            hz > 0
            and result.frame is not None
            and result.new_frame
            and not self.recorder.recording
            and result.t_ns - self._last_preview_ns >= 1e9 / hz
        ):
            self._last_preview_ns = result.t_ns
            self.preview_queue.put(_Preview(self.frame_seq.next(), result, result.pilot))
        n = self.notifier
        # Ping only while the event loop is alive too: a stall anywhere gets us restarted.
        if (
            n.watchdog_interval_s is not None
            and n.watchdog_due()
            and time.monotonic() - self._heartbeat < max(2.0, 2 * n.watchdog_interval_s)
        ):
            n.ping()
        if not self._first_tick_seen:
            self._first_tick_seen = True
            self._call_soon(self._first_tick.set)

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "lap":
            last = self.loop.last
            if last is not None:
                event = {**event, "mode": last.mode, "model": last.pilot}
        self._event_from_thread(event)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        aloop = self._aloop
        if aloop is None or aloop.is_closed():
            return
        try:
            aloop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass

    def _event_from_thread(self, event: dict[str, Any]) -> None:
        self._call_soon(self.emit, event)

    def _recorder_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "recording_stopped":
            self._call_soon(self._emit_after_frames, event)
        else:
            self._event_from_thread(event)

    def _emit_after_frames(self, event: dict[str, Any]) -> None:
        """The hub closes a session when its ``recording_stopped`` arrives, so the event must reach
        the broker after the session's last frame: local listeners hear of it now, the broker once
        the recorder has spooled every frame it was given and the broker acknowledged them (after an
        outage, that is after the backlog)."""
        emitted = self._emit(event, publish=False)
        if emitted is None:
            return

        async def publish_when_sent() -> None:
            try:
                await _poll(lambda: self._closed or not self.recorder.pending)
                target = self.spool.tail
                await _poll(
                    lambda: self._closed or not self.spool.pending_records or self.spool.head >= target
                )
            finally:
                self._queue_event(*emitted)

        self._tasks.append(asyncio.create_task(publish_when_sent()))

    def _retire_pilot(self, pilot: Pilot) -> None:
        # Keep a reference until the event loop closes it, so a large model is never freed on
        # the control thread.
        self._call_soon(lambda: self._tasks.append(asyncio.create_task(asyncio.to_thread(pilot.close))))

    def _spool_appended(self) -> None:
        self._call_soon(self._spool_data.set)

    def _latest_image(self) -> Any:
        last = self.loop.last
        return last.frame.image if last is not None and last.frame is not None else None

    # --- events -------------------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Queue an event for publishing (and tell local listeners). Event loop thread only."""
        self._emit(event, publish=True)

    def _emit(self, event: dict[str, Any], publish: bool) -> tuple[int, bytes] | None:
        """Number an event, tell local listeners, and (with ``publish``) queue it for the broker.
        Returns ``(seq, payload)``, or None for an invalid event."""
        event = dict(event)
        event["seq"] = self._event_seq
        event.setdefault("ts", time.time())
        try:
            validated = EVENT_ADAPTER.validate_python(event)
        except Exception as exc:
            log.error("dropping an invalid event %s: %s", event.get("type"), exc)
            return None
        self._event_seq += 1
        payload = validated.to_json()
        if publish:
            self._queue_event(event["seq"], payload)
        for listener in list(self.event_listeners):
            try:
                listener(json.loads(payload))
            except Exception:
                log.exception("event listener failed")
        return event["seq"], payload

    def _queue_event(self, seq: int, payload: bytes) -> None:
        if len(self._events) >= self.config.publish.event_queue:
            self._events.popleft()
            self.events_dropped += 1
        self._events.append((seq, payload))
        self._events_ready.set()

    # --- MQTT: per-connection tasks ------------------------------------------------------------------
    async def _publish_model_state_on_connect(self, client: aiomqtt.Client) -> None:
        await client.publish(
            self.topics.model_state(self.car), self.models.state().to_json(), qos=1, retain=True
        )

    async def _publish_events(self, client: aiomqtt.Client) -> None:
        topic = self.topics.events(self.car)
        timeout = self.config.publish.publish_timeout_s
        while True:
            while self._events:
                seq, payload = self._events[0]
                await client.publish(topic, payload, qos=1, timeout=timeout)
                if self._events and self._events[0][0] == seq:
                    self._events.popleft()
            self._events_ready.clear()
            await self._events_ready.wait()

    async def _publish_telemetry(self, client: aiomqtt.Client) -> None:
        topic = self.topics.telemetry(self.car)
        while True:
            await asyncio.sleep(1.0 / self.config.publish.telemetry_hz)
            await client.publish(topic, self.telemetry().to_json(), qos=0, timeout=5.0)

    async def _publish_preview(self, client: aiomqtt.Client) -> None:
        topic = self.topics.frames(self.car)
        self.preview_queue.clear()  # what waited while offline is stale
        session = f"live-{self.car}"
        quality = self.config.publish.preview_jpeg_quality
        while True:
            item = await self.preview_queue.async_get()
            frame = item.result.frame
            assert frame is not None
            record = frame_record(
                self.car, session, item.seq, item.result, item.model, {"recorded": False, "preview": True}
            )
            jpeg = await asyncio.to_thread(encode_jpeg, frame.image, quality)
            await client.publish(topic, encode_frame(record, jpeg), qos=0, timeout=5.0)

    async def _send_spool(self, client: aiomqtt.Client) -> None:
        """Publish the spool in order with QoS 1, a window of ``recorder.inflight`` unacknowledged
        frames; a frame leaves the spool only once the broker acknowledged it (and every frame
        before it). Any failure tears down the connection; the next one starts again at the head."""
        topic = self.topics.frames(self.car)
        window = self.config.recorder.inflight
        timeout = self.config.publish.publish_timeout_s
        position = self.spool.head
        inflight: deque[tuple[SpoolRecord, asyncio.Task[None]]] = deque()
        try:
            while True:
                if len(inflight) < window:
                    self._spool_data.clear()
                    records = await asyncio.to_thread(self.spool.read, position, window - len(inflight))
                    for record in records:
                        task = asyncio.create_task(client.publish(topic, record.data, qos=1, timeout=timeout))
                        inflight.append((record, task))
                        position = record.next
                if not inflight:
                    await self._spool_data.wait()
                    continue
                oldest = inflight[0][1]
                if len(inflight) < window:
                    waiter = asyncio.create_task(self._spool_data.wait())
                    await asyncio.wait({oldest, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                else:
                    await asyncio.wait({oldest})
                while inflight and inflight[0][1].done():
                    record, task = inflight.popleft()
                    task.result()  # raises on failure: reconnect, resend from the head
                    self.spool.ack(record)
        finally:
            for _, task in inflight:
                task.cancel()
            for _, task in inflight:
                with contextlib.suppress(BaseException):
                    await task

    # --- MQTT: incoming ---------------------------------------------------------------------------------
    def _on_message(self, message: aiomqtt.Message) -> None:
        arrival_ns = time.monotonic_ns()
        try:
            parsed = self.topics.parse(str(message.topic))
        except ContractError as exc:
            log.warning("ignoring message: %s", exc)
            return
        payload = bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else b""
        if parsed.kind is TopicKind.FLEET_ESTOP:
            self._on_estop(payload)
        elif parsed.kind is TopicKind.CAR_MODEL:
            self.models.offer("car", payload, arrival_ns)
        elif parsed.kind is TopicKind.GROUP_MODEL:
            self.models.offer("group", payload, arrival_ns)
        elif parsed.kind is TopicKind.COMMAND and parsed.command is not None:
            self._tasks.append(asyncio.create_task(self._handle_command(parsed.command, payload)))
            self._tasks = [t for t in self._tasks if not t.done()]

    def _on_estop(self, payload: bytes) -> None:
        if not payload:
            estop = EStop(active=False, reason="cleared", ts=time.time())
        else:
            try:
                estop = EStop.from_json(payload)
            except ContractError as exc:
                # A malformed e-stop is treated as an e-stop: stopping is the safe reading.
                log.error("malformed e-stop message (%s): stopping", exc)
                estop = EStop(active=True, reason=f"malformed e-stop message: {exc}", ts=time.time())
        self.set_estop(estop.active, estop.reason)

    async def _handle_command(self, name: str, payload: bytes) -> None:
        transaction: str | None = None
        try:
            transaction = json.loads(payload).get("transaction")
        except (ValueError, AttributeError):
            pass
        try:
            command = parse_command(name, payload)
            data = await self.apply_command(command)
            response = CommandResponse(status="ok", data=data, transaction=transaction, ts=time.time())
        except (ContractError, ConfigError, ValueError) as exc:
            response = CommandResponse(
                status="error", error=str(exc)[:1000], transaction=transaction, ts=time.time()
            )
        if name == "drive" and response.status == "ok" and transaction is None:
            return  # drive commands stream at joystick rate; answer only when asked
        await self.link.publish(self.topics.command_response(self.car, name), response.to_json(), qos=1)

    async def apply_command(self, command: Any) -> dict[str, Any]:
        """Apply a parsed command (the same code path as MQTT); return the response data."""
        if isinstance(command, DriveCommand):
            self.drive(command.steering, command.throttle)
            return {"mode": self.loop.mode}
        if isinstance(command, ModeCommand):
            self.set_mode(command.mode)
            return {"mode": command.mode, "estop": self.loop.estop}
        if isinstance(command, RecordCommand):
            if command.action == "start":
                return {"session": self.start_recording(command.session)}
            session, frames = self.stop_recording()
            return {"session": session, "frames": frames}
        if isinstance(command, ConfigCommand):
            return self.configure(command.values)
        # rebirth
        if self.link.bdseq is not None:
            await self.link.publish(
                self.topics.car_status(self.car),
                self._status("online", self.link.bdseq).to_json(),
                retain=True,
            )
        return {"bdseq": self.link.bdseq}

    # --- control API (event loop thread) ------------------------------------------------------------------
    def set_mode(self, mode: Any) -> None:
        if mode not in ("manual", "autopilot", "stop"):
            raise ValueError(f"unknown mode {mode!r}")
        self.loop.set_mode(mode)

    def drive(self, steering: float, throttle: float) -> None:
        self.loop.drive(steering, throttle)

    def set_autopilot(self, name: str) -> None:
        if name not in self.pilots:
            raise ValueError(f"unknown pilot {name!r}; available: {', '.join(self.pilots)}")
        self.config = self.config.with_values({"loop.autopilot": name})
        self.loop.set_autopilot(name)

    def set_estop(self, active: bool, reason: str = "") -> None:
        was = self.loop.estop
        self.loop.set_estop(active, reason)
        if active != was:
            log.warning(
                "fleet e-stop %s%s", "ACTIVE" if active else "released", f": {reason}" if reason else ""
            )
            self.emit({"type": "estop", "active": active, "reason": reason})
            data = EStop(active=active, reason=reason, ts=time.time()).to_json()
            self._tasks.append(asyncio.create_task(asyncio.to_thread(write_atomic, self._estop_path, data)))

    @property
    def _estop_path(self) -> Path:
        return self.config.state_dir / "estop.json"

    def _load_estop(self) -> EStop | None:
        try:
            return EStop.from_json(self._estop_path.read_bytes())
        except (OSError, ContractError):
            return None

    def start_recording(self, session: str | None = None) -> str:
        return self.recorder.start_session(session)

    def stop_recording(self) -> tuple[str | None, int]:
        return self.recorder.stop_session()

    def configure(self, values: dict[str, Any]) -> dict[str, Any]:
        """Change run-time settings (keys of RUNTIME_SETTINGS, or ``pilot``); all or nothing."""
        values = dict(values)
        pilot = values.pop("pilot", None)
        unknown = sorted(set(values) - set(RUNTIME_SETTINGS))
        if unknown:
            raise ValueError(
                f"unknown setting(s) {unknown}; settable: {sorted([*RUNTIME_SETTINGS, 'pilot'])}"
            )
        if pilot is not None and pilot != "manual":
            values["autopilot"] = pilot
        if "autopilot" in values and values["autopilot"] not in self.pilots:
            raise ValueError(f"unknown pilot {values['autopilot']!r}; available: {', '.join(self.pilots)}")
        new = self.config.with_values({RUNTIME_SETTINGS[k]: v for k, v in values.items()}, "config command")
        self.config = new
        self.loop.set_autopilot(new.loop.autopilot)
        self.loop.set_tuning(
            autopilot_throttle=new.loop.autopilot_throttle,
            max_throttle=new.loop.max_throttle,
            deadman_ms=new.loop.deadman_ms,
        )
        if pilot == "manual":
            self.loop.set_mode("manual")
        elif pilot is not None:
            self.loop.set_mode("autopilot")
        return {k: _get(new, v) for k, v in RUNTIME_SETTINGS.items()}

    async def offer_model(self, envelope: bytes) -> bool:
        """Run a model envelope through the hot-swap pipeline directly (no broker needed)."""
        return await self.models.process(envelope, time.monotonic_ns())

    # --- state --------------------------------------------------------------------------------------------
    @property
    def model_ref(self) -> str | None:
        return self.models.active.ref if getattr(self, "models", None) and self.models.active else None

    def _status(self, state: Any, bdseq: int) -> CarStatus:
        cam = self.body.camera if self.body else None
        return CarStatus(
            state=state,
            bdseq=bdseq,
            ts=time.time(),
            sw_version=schemas.__version__,
            mode=self.loop.mode if getattr(self, "loop", None) else None,
            model=self.model_ref,
            capabilities=[
                *(self.body.capabilities if self.body else []),
                "record",
                "hot-swap",
                *[f"pilot:{p}" for p in self.pilots],
            ],
            camera=CameraInfo(
                width=cam.config.width, height=cam.config.height, fps=cam.config.fps, kind=cam.kind
            )
            if cam is not None
            else None,
        )

    def telemetry(self) -> Telemetry:
        stats = self.loop.take_stats()
        last = self.loop.last
        body = last.body if last is not None else None
        self._telemetry_seq += 1
        return Telemetry(
            seq=self._telemetry_seq - 1,
            ts=time.time(),
            mode=last.mode if last is not None else self.loop.mode,
            session=self.recorder.session,
            model=(last.pilot if last is not None and last.pilot else self.model_ref),
            recording=self.recorder.recording,
            steering=last.steering if last is not None else 0.0,
            throttle=last.throttle if last is not None else 0.0,
            speed=body.speed if body is not None else None,
            loop_hz=self.config.loop.hz,
            loop_period_ms=_r(stats.period_ms),
            loop_late_p50_ms=_r(stats.timing.late_p50_ms),
            loop_late_p99_ms=_r(stats.timing.late_p99_ms),
            missed_ticks=stats.timing.missed,
            inference_ms=_r(stats.inference_ms),
            battery_v=self.sensor_reading.battery_v,
            cpu_temp_c=self.sensor_reading.cpu_temp_c,
            lap=body.lap if body is not None else None,
            progress=body.progress if body is not None else None,
            off_track=body.off_track if body is not None else None,
            frames_dropped=self.recorder.queue.dropped + self.recorder.dropped_full,
            spool_frames=self.spool.pending_records,
        )

    def status(self) -> dict[str, Any]:
        """A snapshot for programs that embed the daemon (and for tests)."""
        last = self.loop.last
        return {
            "car": self.car,
            "connected": self.link.connected.is_set(),
            "bdseq": self.link.bdseq,
            "mode": self.loop.mode,
            "estop": self.loop.estop,
            "autopilot": self.loop.autopilot,
            "model": self.model_ref,
            "recording": self.recorder.session,
            "spool_frames": self.spool.pending_records,
            "frames_dropped": self.recorder.queue.dropped + self.recorder.dropped_full,
            "preview_dropped": self.preview_queue.dropped,
            "events_dropped": self.events_dropped,
            "ticks": self.loop.timer.ticks,
            "missed_ticks": self.loop.timer.missed,
            "steering": last.steering if last else 0.0,
            "throttle": last.throttle if last else 0.0,
        }

    def _model_state_changed(self, state: ModelState) -> None:
        if getattr(self, "link", None) is None:
            return
        task = asyncio.create_task(
            self.link.publish(self.topics.model_state(self.car), state.to_json(), qos=1, retain=True)
        )
        self._tasks.append(task)

    # --- background tasks ------------------------------------------------------------------------------
    async def _heartbeat_task(self) -> None:
        while True:
            self._heartbeat = time.monotonic()
            await asyncio.sleep(0.25)

    async def _sensor_task(self) -> None:
        sensors = self.body.sensors if self.body else None
        if sensors is None:
            return
        while True:
            reading = await asyncio.to_thread(sensors.read)
            self.sensor_reading = reading
            imu = reading.imu()
            self.recorder.extra = {"imu": imu} if imu else {}
            await asyncio.sleep(1.0 / self.config.publish.telemetry_hz)

    # --- run and shutdown ----------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Drive until ``stop`` is set (or the control loop dies, which raises)."""
        stop = stop or asyncio.Event()
        if not self._started:
            async with self:
                await self._wait(stop)
        else:
            await self._wait(stop)

    async def _wait(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            if self.loop.crashed is not None:
                raise RuntimeError(f"control loop stopped: {self.loop.crashed}")

    async def shutdown(self) -> None:
        if self._closed or not self._started:
            return
        self._closed = True
        self.notifier.stopping()
        loop = getattr(self, "loop", None)
        if loop is not None:
            await asyncio.to_thread(loop.stop)
        recorder = getattr(self, "recorder", None)
        if recorder is not None:
            recorder.stop_session(reason="shutdown")
            await asyncio.to_thread(recorder.stop)
        link = getattr(self, "link", None)
        if link is not None and self._link_task is not None:
            await self._drain(link)
            await link.close()
            # Every wait here is bounded: a shutdown never hangs on the network.
            if not await _finish(self._link_task, 5.0 + self.config.broker.connect_timeout_s):
                log.warning("MQTT did not close in time; the broker will send the last will")
        pending = [t for t in self._tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        self._tasks.clear()
        if loop is not None:
            await asyncio.to_thread(loop.close_pilots)
        spool = getattr(self, "spool", None)
        if spool is not None:
            if spool.pending_records:
                log.info("%d recorded frames stay in the spool for the next start", spool.pending_records)
            await asyncio.to_thread(spool.close)
        if self.body is not None:
            await asyncio.to_thread(self.body.disconnect)
        self.notifier.close()

    async def _drain(self, link: MqttLink) -> None:
        """Give the spool and the event queue a moment to reach the broker before disconnecting."""
        deadline = time.monotonic() + self.config.recorder.shutdown_flush_s
        while time.monotonic() < deadline and link.connected.is_set():
            if self.spool.pending_records == 0 and not self._events:
                return
            await asyncio.sleep(0.02)


async def _poll(done: Callable[[], bool], interval_s: float = 0.01) -> None:
    """Wait until ``done()`` (state owned by other threads, which cannot set an asyncio.Event)."""
    while True:
        if done():
            return
        await asyncio.sleep(interval_s)


async def _finish(task: "asyncio.Task[Any]", grace_s: float) -> bool:
    """Wait for ``task`` to end by itself, then cancel it; never wait longer than ``2 × grace_s``."""
    done, _ = await asyncio.wait({task}, timeout=grace_s)
    if not done:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=grace_s)
    if done and not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with %r", task.get_name(), task.exception())
    return bool(done)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _get(config: CarConfig, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node
