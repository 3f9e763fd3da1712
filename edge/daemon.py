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
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.body_factory import build_body
from edge.commands import CommandHandler, EStopStore, apply_settings
from edge.config import CarConfig
from edge.detector import Detector, slot_summary, telemetry_fields
from edge.detector_slot import detector_manager
from edge.feedback import FeedbackCapture
from edge.hotswap import ModelManager, load_model_keys, model_manager
from edge.loop import ControlLoop, TickResult
from edge.metrics import CarMetrics, CarReadings
from edge.mqtt import BdseqStore, MqttLink
from edge.outbox import EventLog, Outbox
from edge.pilots import Pilot, pilot_plugins
from edge.recorder import Recorder
from edge.runtimes import preload as preload_runtimes
from edge.snapshot import Parts, SensorPoller, TelemetryBuilder, car_status, status
from edge.spool import ForwardSpool
from edge.systemd import Notifier, Watchdog
from edge.trust import SequenceStore, TrustPolicy
from firmware.car_body import Body
from firmware.cycle_timer import CycleTimer
from schemas.input_stats import feature_drift, input_drift
from schemas.messages import CarStatus, ModelState, Telemetry
from schemas.signing import KeyRing
from schemas.topics import Topics

log = logging.getLogger(__name__)

T = TypeVar("T")


class NotStarted(RuntimeError):
    """A component of the car was used before :meth:`CarDaemon.start` built it."""


class CarDaemon:
    """The car's lifecycle: build and start the components, run, and shut them down in order.

    What it sends lives in :mod:`edge.outbox`, what it hears in :mod:`edge.commands`, what it
    reports in :mod:`edge.snapshot`; the daemon wires them together and is the loop's sink.
    """

    def __init__(
        self,
        config: CarConfig,
        *,
        body: Body | None = None,
        pilots: dict[str, Pilot] | None = None,
        public_key: Ed25519PublicKey | list[Ed25519PublicKey] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.topics = Topics(config.broker.prefix)
        self.car = config.car.id
        self.body: Body | None = body
        self._extra_pilots = dict(pilots or {})
        self._public_key = public_key
        self.notifier = notifier or Notifier()
        self.events = EventLog(lambda: self.config.publish.event_queue)
        self.outbox = Outbox(
            self.car,
            self.topics,
            lambda: self.config,
            self.events,
            model_state=lambda: self.models.state(),
            detector_state=self._detector_state,
            telemetry=self.telemetry,
            spool=lambda: self.spool,
        )
        self.commands = CommandHandler(
            self.car,
            self.topics,
            self,
            link=lambda: self.link,
            models=lambda: self.models,
            birth=lambda n: self._status("online", n),
            detectors=lambda: self.detectors,
        )
        self.estop_store = EStopStore(config.state_dir)
        self.telemetry_builder = TelemetryBuilder()
        self.sensors = SensorPoller()
        self.watchdog = Watchdog(self.notifier)
        # Built by start(), in this order; shutdown() closes whichever exist.
        self._spool: ForwardSpool | None = None
        self._loop: ControlLoop | None = None
        self._recorder: Recorder | None = None
        self._feedback: FeedbackCapture | None = None
        self._models: ModelManager | None = None
        self._detectors: ModelManager | None = None
        self._link: MqttLink | None = None
        self._link_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._first_tick = asyncio.Event()
        self._first_tick_seen = False
        self._started = False
        self._closed = False
        self._aloop: asyncio.AbstractEventLoop | None = None
        self.metrics: CarMetrics | None = None  # the car's own /metrics ([metrics] enabled)
        # The last telemetry window's drift against the active model's card (None: not measured).
        self.input_drift: float | None = None
        self.feature_drift: float | None = None

    # --- components (built by start) ------------------------------------------------------------
    @property
    def spool(self) -> ForwardSpool:
        return _built(self._spool, "spool")

    @property
    def loop(self) -> ControlLoop:
        return _built(self._loop, "loop")

    @property
    def feedback(self) -> FeedbackCapture:
        return _built(self._feedback, "feedback")

    @property
    def recorder(self) -> Recorder:
        return _built(self._recorder, "recorder")

    @property
    def models(self) -> ModelManager:
        return _built(self._models, "models")

    @property
    def detectors(self) -> ModelManager:
        """The detector slot's model manager (edge.detector_slot)."""
        return _built(self._detectors, "detector slot")

    @property
    def link(self) -> MqttLink:
        return _built(self._link, "link")

    @property
    def event_listeners(self) -> list[Callable[[dict[str, Any]], None]]:
        return self.events.listeners

    @property
    def pilots(self) -> list[str]:
        return ["model", *self._extra_pilots]

    # --- start ----------------------------------------------------------------------------------
    async def __aenter__(self) -> "CarDaemon":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._aloop = asyncio.get_running_loop()
        keys = load_model_keys(self.config.models, self._public_key)
        await self._open_storage()
        body = self.body = self.body or build_body(self.config)
        await asyncio.to_thread(body.connect)
        try:
            await self._build(body, keys)
            await asyncio.to_thread(self._serve_metrics)
            self._go()
            await asyncio.wait_for(self._first_tick.wait(), timeout=10.0)
        except BaseException:
            await self.shutdown()
            raise
        self.notifier.ready(f"driving at {self.config.loop.hz:g} Hz")
        log.info(
            "car %s running at %g Hz (model %s)", self.car, self.config.loop.hz, self.model_ref or "none"
        )

    async def _open_storage(self) -> None:
        cfg = self.config
        await asyncio.to_thread(cfg.state_dir.mkdir, parents=True, exist_ok=True)
        self._spool = await asyncio.to_thread(
            ForwardSpool,
            cfg.spool_dir,
            int(cfg.recorder.max_spool_mb * 1024 * 1024),
            int(cfg.recorder.segment_mb * 1024 * 1024),
            cfg.recorder.fsync_interval_s,
        )
        self._spool.on_append = lambda: self._call_soon(self.outbox.spool_data.set)
        await asyncio.to_thread(preload_runtimes, list(cfg.models.preload_runtimes))

    async def _build(self, body: Body, keys: KeyRing) -> None:
        cfg = self.config
        # A lockstep simulator may tick faster than real time; its world still advances one
        # tick period per tick.
        speedup = cfg.sim.speedup if cfg.is_sim and cfg.sim.clock == "lockstep" else 1.0
        loop = self._loop = ControlLoop(
            body,
            cfg.loop,
            sink=self,
            on_replaced=self._retire_pilot,
            timer=CycleTimer(cfg.loop.hz * speedup),
            detector=cfg.detector,
        )
        # An e-stop seen before a reboot holds until the fleet releases it.
        saved = await asyncio.to_thread(self.estop_store.load)
        if saved is not None and saved.active:
            loop.set_estop(True, saved.reason)
            log.warning("e-stop still active from before the restart: %s", saved.reason)
        self._recorder = Recorder(
            self.car,
            self.spool,
            self.outbox.frame_seq,
            jpeg_quality=cfg.recorder.jpeg_quality,
            queue_frames=cfg.recorder.queue_frames,
            on_event=self._recorder_event,
            lidar=body.lidar_scan if cfg.recorder.lidar else None,
        )
        self._recorder.start()
        self._feedback = FeedbackCapture(
            self.car,
            lambda: self.config.feedback,
            self.outbox.frame_seq,
            self.spool,
            jpeg_quality=cfg.recorder.jpeg_quality,
            on_done=lambda event: self._call_soon(self._emit_after_frames, event),
        )
        self._feedback.start()
        self._install_pilots(body)
        self._models = self._model_manager(loop, keys)
        await self._models.load_cached()
        assert loop.detector is not None
        self._detectors = detector_manager(
            cfg,
            loop,
            loop.detector,
            self._trust(keys, "detector-sequences.json"),
            latest_frame=self._latest_image,
            on_event=self.emit,
            on_state=self._detector_state_changed,
        )
        await self._detectors.load_cached()
        self._link = MqttLink(
            cfg,
            self.topics,
            bdseq=BdseqStore(cfg.state_dir / "bdseq"),
            birth=lambda n: self._status("online", n),
            death=lambda n: self._status("offline", n),
            on_message=self.commands.on_message,
            session_tasks=self.outbox.session_tasks(),
            inflight=cfg.recorder.inflight,
        )

    def _trust(self, keys: KeyRing, sequences_file: str) -> TrustPolicy:
        """The car's rules for a slot's model envelopes, with that slot's last sequences."""
        m = self.config.models
        return TrustPolicy(
            keys,
            self.car,
            self.config.car.group,
            allow_unsigned=m.allow_unsigned,
            sequences=SequenceStore(self.config.state_dir / sequences_file),
            clock_skew_s=m.clock_skew_s,
        )

    def _model_manager(self, loop: ControlLoop, keys: KeyRing) -> ModelManager:
        return model_manager(
            self.config,
            loop,
            self.config.model_cache_dir,
            self._trust(keys, "model-sequences.json"),
            latest_frame=self._latest_image,
            on_event=self.emit,
            on_state=self._model_state_changed,
        )

    def _serve_metrics(self) -> None:
        """Start /metrics before the loop ticks (importing prometheus_client holds the GIL a while).
        A port that cannot be bound is logged and the car drives on without metrics."""
        section = self.config.metrics
        if not section.enabled:
            return
        metrics = CarMetrics(self.car, section, self._readings)
        try:
            port = metrics.start()
        except OSError as exc:
            log.error(
                "cannot serve metrics on %s:%d: %s; driving without them", section.bind, section.port, exc
            )
            return
        self.metrics = metrics
        log.info("metrics on http://%s:%d/metrics", section.bind, port)

    def _readings(self) -> CarReadings:
        """What a scrape of /metrics reads (the metrics server's thread)."""
        loop, models = self.loop, self._models
        active = models.active if models is not None else None
        link = self._link
        return CarReadings(
            ticks=loop.timer.ticks,
            missed_ticks=loop.timer.missed,
            interventions=loop.health.interventions,
            off_track=loop.health.off_track,
            last_lap_s=loop.health.last_lap_s,
            input_drift_psi=self.input_drift,
            feature_drift=self.feature_drift,
            model=active.ref if active is not None else None,
            model_sha256=active.sha256 if active is not None else None,
            outbox_frames=self.spool.pending_records,
            outbox_events=len(self.events.queue),
            connected=link is not None and link.connected.is_set(),
            mode=loop.last.mode if loop.last is not None else loop.mode,
            **(slot_summary(loop.detector) if loop.detector is not None else {}),
        )

    def _go(self) -> None:
        # Latency: the control thread waits at most this long for the GIL, and what exists
        # after start-up is never scanned by the garbage collector again.
        sys.setswitchinterval(self.config.loop.gil_switch_interval_ms / 1000.0)
        gc.freeze()
        self.loop.start()
        self._link_task = asyncio.create_task(self.link.run(), name=f"mqtt-{self.car}")
        self._tasks += [
            asyncio.create_task(self.models.run(), name="models"),
            asyncio.create_task(self.detectors.run(), name="detectors"),
            asyncio.create_task(self.watchdog.heartbeat(), name="heartbeat"),
        ]
        sensors = self.body.sensors if self.body is not None else None
        if sensors is not None:
            poll = self.sensors.run(sensors, self.recorder, lambda: 1.0 / self.config.publish.telemetry_hz)
            self._tasks.append(asyncio.create_task(poll, name="sensors"))

    def _install_pilots(self, body: Body) -> None:
        """The pilots given to the daemon, then every pilot plugin this body can carry."""
        for name, pilot in self._extra_pilots.items():
            self.loop.install_pilot(name, pilot)
        for name, factory in pilot_plugins().items():
            if name in self._extra_pilots:
                continue
            try:
                pilot = factory(body, self.config)
            except Exception as exc:  # e.g. the expert needs a simulated body
                log.debug("pilot plugin %s not available here: %s", name, exc)
                continue
            self.loop.install_pilot(name, pilot)
            self._extra_pilots[name] = pilot

    # --- the control loop's sink (control thread) -----------------------------------------------
    def on_tick(self, result: TickResult) -> None:
        recorder = self.recorder
        if self._feedback is not None:  # before the recorder: a capture closed now takes seqs first
            self._feedback.on_tick(result, recorder.recording)
        recorder.offer(result, result.pilot)
        self.outbox.offer_preview(result, recorder.recording)
        if self.metrics is not None:
            confidence = result.decision.confidence if result.decision is not None else None
            self.metrics.observe_tick(self.loop.timer.last_late_s, result.inference_ms, confidence)
        self.watchdog.on_tick()  # pings only while the event loop is alive too
        if not self._first_tick_seen:
            self._first_tick_seen = True
            self._call_soon(self._first_tick.set)

    def on_event(self, event: dict[str, Any]) -> None:
        if self._feedback is not None:
            self._feedback.on_event(event)
        if event.get("type") == "lap":
            if self.metrics is not None and isinstance(event.get("lap_time_s"), int | float):
                self.metrics.observe_lap(float(event["lap_time_s"]))
            last = self.loop.last
            if last is not None:
                event = {**event, "mode": last.mode, "model": last.pilot}
        self._call_soon(self.emit, event)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        aloop = self._aloop
        if aloop is None or aloop.is_closed():
            return
        try:
            aloop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass

    def _recorder_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "recording_stopped":
            self._call_soon(self._emit_after_frames, event)
        else:
            self._call_soon(self.emit, event)

    def _emit_after_frames(self, event: dict[str, Any]) -> None:
        """The hub closes a session when its ``recording_stopped`` arrives, so the event must reach
        the broker after the session's last frame: local listeners hear of it now, the broker once
        the recorder has spooled every frame it was given and the broker acknowledged them (after an
        outage, that is after the backlog)."""
        emitted = self.events.emit(event, publish=False)
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
                self.events.enqueue(*emitted)

        self._tasks.append(asyncio.create_task(publish_when_sent()))

    def _retire_pilot(self, pilot: Pilot | Detector) -> None:
        # Keep a reference until the event loop closes it, so a large model is never freed on
        # the control thread.
        self._call_soon(lambda: self._tasks.append(asyncio.create_task(asyncio.to_thread(pilot.close))))

    def _latest_image(self) -> Any:
        last = self.loop.last
        return last.frame.image if last is not None and last.frame is not None else None

    def _check_drift(self, telemetry: Telemetry) -> None:
        """A telemetry window whose inputs left the model's training statistics is a feedback moment."""
        active = self._models.active if self._models is not None else None
        reference = active.card.input_stats if active is not None else None
        live = telemetry.input_stats
        if reference is None:  # nothing to compare with (a model without statistics, or none)
            self.input_drift = self.feature_drift = None
        if reference is None or live is None:
            return
        self.input_drift = score = input_drift(reference, live)
        self.feature_drift = shift = None
        if reference.features is not None and live.features is not None:
            with contextlib.suppress(ValueError):  # another model's features: nothing to compare
                self.feature_drift = shift = feature_drift(reference.features, live.features)
        cfg = self.config.feedback
        if self._feedback is None:
            return
        if score > cfg.drift_psi:
            self._feedback.request("drifted_input", f"input PSI {score:.2f} > {cfg.drift_psi:.2f}")
        elif shift is not None and shift > cfg.drift_features:
            self._feedback.request("drifted_input", f"feature drift {shift:.2f} > {cfg.drift_features:.2f}")

    # --- control API (event loop thread; the commands of edge.commands call these too) ----------
    def emit(self, event: dict[str, Any]) -> None:
        """Queue an event for publishing (and tell local listeners)."""
        self.events.emit(event)

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
            self._tasks.append(asyncio.create_task(asyncio.to_thread(self.estop_store.save, active, reason)))

    def start_recording(self, session: str | None = None) -> str:
        return self.recorder.start_session(session)

    def stop_recording(self) -> tuple[str | None, int]:
        return self.recorder.stop_session()

    def configure(self, values: dict[str, Any]) -> dict[str, Any]:
        """Change run-time settings (see :func:`edge.commands.apply_settings`); all or nothing."""
        self.config, now = apply_settings(self.config, self.loop, values, self.pilots)
        return now

    async def offer_model(self, envelope: bytes) -> bool:
        """Run a model envelope through the hot-swap pipeline directly (no broker needed)."""
        return await self.models.process(envelope, time.monotonic_ns())

    # --- state ----------------------------------------------------------------------------------
    @property
    def model_ref(self) -> str | None:
        active = self._models.active if self._models is not None else None
        return active.ref if active is not None else None

    def _parts(self) -> Parts:
        return Parts(self.car, _built(self.body, "body"), self.loop, self.recorder, self.spool, self.link)

    def _status(self, state: Any, bdseq: int) -> CarStatus:
        mode = self._loop.mode if self._loop is not None else None
        return car_status(state, bdseq, self.body, mode, self.model_ref, self.pilots)

    def telemetry(self) -> Telemetry:
        telemetry = self.telemetry_builder.build(
            self._parts(), self.config.loop.hz, self.model_ref, self.sensors.reading
        )
        self._check_drift(telemetry)
        stage = self._loop.detector if self._loop is not None else None
        return telemetry.model_copy(update=telemetry_fields(stage)) if stage is not None else telemetry

    def status(self) -> dict[str, Any]:
        """A snapshot for programs that embed the daemon (and for tests)."""
        dropped = self.outbox.preview_queue.dropped
        snapshot = status(self._parts(), self.model_ref, dropped, self.events.dropped)
        if self.loop.detector is not None:
            snapshot.update(slot_summary(self.loop.detector))
        return snapshot

    def _detector_state(self) -> ModelState | None:
        """The detector slot's state, once it has held or refused a model (None before: a car
        without a detector says nothing about one)."""
        d = self._detectors
        if d is None or (d.active is None and d.last_error is None):
            return None
        return d.state()

    def _detector_state_changed(self, state: ModelState) -> None:
        self._publish_state(self.topics.detector_state(self.car), state)

    def _model_state_changed(self, state: ModelState) -> None:
        self._publish_state(self.topics.model_state(self.car), state)

    def _publish_state(self, topic: str, state: ModelState) -> None:
        """A model slot's state, retained (the outbox publishes it again on each connection)."""
        if self._link is None:
            return
        publish = self._link.publish(topic, state.to_json(), qos=1, retain=True)
        self._tasks.append(asyncio.create_task(publish))

    # --- run and shutdown -----------------------------------------------------------------------
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
        """Neutral outputs first, then the recording, the network, the tasks and the storage."""
        if self._closed or not self._started:
            return
        self._closed = True
        self.notifier.stopping()
        if self._loop is not None:
            await asyncio.to_thread(self._loop.stop)
        if self._recorder is not None:
            self._recorder.stop_session(reason="shutdown")
            await asyncio.to_thread(self._recorder.stop)
        if self._feedback is not None:
            self._feedback.flush()
            await asyncio.to_thread(self._feedback.stop)
        await self._close_link()
        await self._cancel_tasks()
        if self._loop is not None:
            await asyncio.to_thread(self._loop.close_pilots)
        if self._spool is not None:
            if self._spool.pending_records:
                log.info(
                    "%d recorded frames stay in the spool for the next start", self._spool.pending_records
                )
            await asyncio.to_thread(self._spool.close)
        if self.body is not None:
            await asyncio.to_thread(self.body.disconnect)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        self.notifier.close()

    async def _close_link(self) -> None:
        link = self._link
        if link is None or self._link_task is None:
            return
        await self._drain(link)
        await link.close()
        # Every wait here is bounded: a shutdown never hangs on the network.
        if not await _finish(self._link_task, 5.0 + self.config.broker.connect_timeout_s):
            log.warning("MQTT did not close in time; the broker will send the last will")

    async def _cancel_tasks(self) -> None:
        pending = [t for t in [*self._tasks, *self.commands.tasks] if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        self._tasks.clear()
        self.commands.tasks.clear()

    async def _drain(self, link: MqttLink) -> None:
        """Give the spool and the event queue a moment to reach the broker before disconnecting."""
        deadline = time.monotonic() + self.config.recorder.shutdown_flush_s
        while time.monotonic() < deadline and link.connected.is_set():
            if self.spool.pending_records == 0 and not self.events.queue:
                return
            await asyncio.sleep(0.02)


def _built(part: T | None, name: str) -> T:
    if part is None:
        raise NotStarted(f"the car's {name} exists once the daemon has started")
    return part


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
