"""The hub as one object that runs inside another program or on its own.

    async with HubService(HubConfig(data_dir=Path("hub-data"))) as hub:
        print(hub.api_url, hub.api_token)
        ...
        print(hub.ingest_stats().summary())

Ingest (MQTT, spool, sealer, sinks) runs on its own threads, so a busy event loop in the host
program (simulated cars, a demo) never delays an acknowledgement; the REST API runs on the host's
event loop as a uvicorn server.
"""

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry

from hub.api.app import create_app
from hub.api.parts import ApiParts
from hub.config import HubConfig, HubConfigError
from hub.fleet.deployments import Deployer, load_signing_key
from hub.fleet.jobs import request_job
from hub.ingest.receiver import Ingest
from hub.mlops.canary import CanaryCollector, CanaryController
from hub.mlops.feedback import FeedbackCollector
from hub.mlops.monitor import FleetMonitor
from hub.mlops.release import Releaser
from hub.mlops.triggers import RetrainPolicy
from hub.storage.catalog import Catalog
from hub.storage.sealer import SealerHandle, manifest_from_row
from hub.storage.sealproc import make_sealer
from hub.storage.spool import WriteAheadSpool
from hub.telemetry.metrics import (
    FeedbackMetrics,
    FeedbackSize,
    FleetCollector,
    HubCollector,
    HubGauges,
    IngestCounters,
    IngestStats,
)
from hub.telemetry.sinks import EventRecord, Fanout, IngestRecord, SqliteSink, sinks_from_config
from infra.store import NoSuchKey, ObjectStore
from schemas import __version__
from schemas.dataset import SessionManifest, session_manifest_key
from schemas.input_stats import InputStats
from schemas.messages import DriftEvent, Event, TrainParams
from schemas.topics import Topics

log = logging.getLogger(__name__)

MiB = 1024 * 1024


def _load_or_create_token(path: Path) -> str:
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    log.info("generated an API token in %s", path)
    return token


class HubService:
    """Ingest, storage, catalog, REST API, deployments and job dispatch, started and stopped together."""

    def __init__(self, config: HubConfig | None = None) -> None:
        self.config = config or HubConfig()
        self.topics = Topics(self.config.topic_prefix)
        self.counters = IngestCounters()
        self.registry = CollectorRegistry(auto_describe=True)
        self.started_at: float | None = None
        self._api_socket: socket.socket | None = None
        self._api_url: str | None = None
        self._server: Any = None
        self._server_task: asyncio.Task[None] | None = None
        self._ingest_writer: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._running = False
        # set in start()
        self.api_token = ""
        self.catalog: Catalog
        self.store: ObjectStore
        self.spool: WriteAheadSpool
        self.sealer: SealerHandle
        self.sinks: Fanout
        self.sqlite_sink: SqliteSink | None = None
        self.ingest: Ingest
        self.deployer: Deployer
        self.monitor: FleetMonitor
        self.retrain: RetrainPolicy
        self.canaries: CanaryController
        self.releaser: Releaser
        self.feedback: FeedbackCollector
        self._mlops_thread: threading.Thread | None = None

    # --- addresses ----------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """Where this process reaches the API (``http://host:port``), known once started."""
        if self._api_url is None:
            raise RuntimeError("the hub has not been started")
        return self._api_url

    @property
    def public_url(self) -> str:
        """The URL cars and trainers use (``api.public_url``, default ``api_url``)."""
        return self.config.api.public_url or self.api_url

    @property
    def public_key_pem(self) -> str:
        return self.deployer.public_key_pem

    @property
    def key_id(self) -> str:
        return self.deployer.key_id

    @property
    def running(self) -> bool:
        return self._running

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._running:
            return
        self._bind_api()
        try:
            await asyncio.to_thread(self._start_components)
        except BaseException:
            if self._api_socket is not None:
                self._api_socket.close()
            await asyncio.to_thread(self._cleanup_partial_start)
            raise
        await self._start_api()
        self._running = True
        self.started_at = time.time()
        wait = self.config.mqtt.connect_wait_s
        if wait > 0:
            connected = await asyncio.to_thread(self.ingest.wait_connected, wait)
            if not connected:
                log.warning("broker %s not reachable yet; ingest keeps trying", self.config.mqtt.broker)
        log.info(
            "hub started: API %s (OpenAPI at /docs), broker %s, store %s, data in %s",
            self.api_url,
            self.config.mqtt.broker,
            self.store.url,
            self.config.data_dir,
        )

    def _bind_api(self) -> None:
        cfg = self.config.api
        family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((cfg.host, cfg.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}") from None
        sock.listen(128)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        host = cfg.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        self._api_socket = sock
        self._api_url = f"{'https' if cfg.tls else 'http'}://{host}:{port}"

    def _start_components(self) -> None:
        """Build the parts along the frame's path, then start them in the order that loses nothing."""
        self._prepare_token()
        self._open_catalog_and_store()
        self.sinks, self.sqlite_sink = sinks_from_config(self.config.sinks, self.config.telemetry_path)
        self._build_spool_and_sealer()
        self._build_ingest()
        self._build_deployer()
        self._build_canaries()
        # Order matters: the sealer replays the spool before a new frame arrives, so duplicates are
        # recognised; the spool starts a fresh segment after the old ones.
        self.spool.open()
        self.sealer.start()
        self.sinks.start()
        self.ingest.start()
        self.registry.register(HubCollector(self.counters, self.sinks.workers, self._gauges))
        self.registry.register(FleetCollector(self.monitor.rows, self.config.mlops.drift_threshold))
        self.registry.register(CanaryCollector(self.canaries.all))
        self.registry.register(FeedbackMetrics(self._feedback_size))
        self._start_ingest_points()
        self._mlops_thread = threading.Thread(target=self._mlops_loop, name="hub-mlops", daemon=True)
        self._mlops_thread.start()

    def _prepare_token(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.api_token = cfg.api_token_from_env() or _load_or_create_token(cfg.token_path)
        if not cfg.api_token_from_env():
            log.info("the API token for mutating routes is in %s", cfg.token_path)

    def _open_catalog_and_store(self) -> None:
        self.catalog = Catalog(self.config.catalog_path)
        self.store = self.config.open_store()
        self.store.check()

    def _build_spool_and_sealer(self) -> None:
        spool = self.config.spool
        self.spool = WriteAheadSpool(
            self.config.spool_dir,
            fsync=spool.fsync,
            segment_bytes=int(spool.segment_mb * MiB),
            max_batch=spool.max_batch_frames,
            max_pending_bytes=int(spool.max_pending_mb * MiB),
            commit_interval_s=spool.commit_interval_ms / 1000,
        )
        self.sealer = make_sealer(self.config, self.spool, self.store, self.catalog, self.counters)

    def _build_ingest(self) -> None:
        self.ingest = Ingest(
            self.config,
            self.topics,
            self.spool,
            self.catalog,
            self.counters,
            self.sinks,
            lambda: self.public_url,
        )
        self.monitor = FleetMonitor(self.config.mlops, self._card_stats, self._raise_event)
        self.ingest.telemetry_observers.append(self.monitor.on_telemetry)
        self.ingest.event_observers.append(self.monitor.on_car_event)
        self.feedback = FeedbackCollector(self.config.mlops, self.catalog, self.store)
        self.retrain = RetrainPolicy(
            self.config.mlops, self.catalog, self._request_train, self.feedback.training_set
        )

    def _feedback_size(self) -> FeedbackSize:
        manifest = self.feedback.dataset()
        refs = [*manifest.get("train", []), *manifest.get("val", [])]
        rows = [self.catalog.get_session(r["car"], r["session"]) for r in refs]
        return FeedbackSize(len(refs), sum(row["frame_count"] for row in rows if row is not None))

    def _card_stats(self, ref: str) -> InputStats | None:
        """The training input statistics in the card of model ``name:version``, if registered."""
        name, _, version = ref.partition(":")
        model = self.catalog.get_model(name, version) if version else None
        stats = (model or {}).get("card", {}).get("input_stats")
        return InputStats.from_dict(stats) if stats else None

    def _raise_event(self, car: str, event: Event) -> None:
        """An event the hub raises about a car: into the sinks, like the car's own events."""
        self.sinks.put(EventRecord(car, event))
        if isinstance(event, DriftEvent):
            self.retrain.on_event(car, event)

    def _request_train(self, params: TrainParams, requested_by: str) -> dict[str, Any]:
        return request_job(
            self.catalog, self.topics, self.ingest.publish, "train", params, requested_by=requested_by
        )

    def _build_deployer(self) -> None:
        cfg = self.config
        self.deployer = Deployer(
            self.catalog,
            self.store,
            self.topics,
            load_signing_key(cfg.key_path),
            self.ingest.publish,
            inline_max_bytes=int(cfg.deployments.inline_max_mb * MiB),
            public_url=lambda: self.public_url,
            grant_secret=self.api_token,
            envelope_ttl_s=cfg.deployments.envelope_ttl_s,
        )
        threading.Thread(target=self._refresh_models, name="hub-model-refresh", daemon=True).start()
        if cfg.deployments.republish_on_connect:
            deployer = self.deployer
            self.ingest.on_connect_hooks.append(
                lambda: log.debug("republished %d deployments", deployer.republish_all())
            )

    def _refresh_models(self) -> None:
        """Sign current models again before their envelopes expire (checked every ttl/8, at most 1 h)."""
        interval = min(3600.0, self.config.deployments.envelope_ttl_s / 8)
        while not self._stop_event.wait(interval):
            try:
                if sent := self.deployer.refresh_expiring():
                    log.info("re-signed %d model deployments before they expire", sent)
            except Exception:
                log.exception("refreshing model deployments failed")

    def _build_canaries(self) -> None:
        self.canaries = CanaryController(
            self.config.mlops, self.catalog, self.store, self.deployer, self.monitor, self._raise_event
        )
        self.ingest.event_observers.append(self.canaries.on_car_event)
        self.releaser = Releaser(self.config.mlops, self.catalog, self.store, self.deployer, self.canaries)
        self.ingest.job_observers.append(self.releaser.on_job_result)

    def _mlops_loop(self) -> None:
        """The MLOps policies that run on time: canaries and releases each second, feedback,
        degradation, schedule."""
        next_scan = time.monotonic() + self.config.mlops.feedback_scan_s
        while not self._stop_event.wait(1.0):
            try:
                self.canaries.tick()
                self.releaser.tick()
                self.retrain.on_health(self.monitor.rows())
                self.retrain.on_schedule(self._deployed_models())
                if self.config.mlops.feedback and time.monotonic() >= next_scan:
                    self.collect_feedback()
                    next_scan = time.monotonic() + self.config.mlops.feedback_scan_s
            except Exception:  # each policy is tried again on the next round
                log.exception("an MLOps policy failed")

    def collect_feedback(self) -> dict[str, Any]:
        """Read new sealed sessions for feedback frames; the feedback trigger sees what was found."""
        batch = self.feedback.scan()
        jobs = self.retrain.on_feedback(batch.frames)
        return {
            "frames": batch.frames,
            "sessions": [s.to_dict() for s in batch.sessions],
            "jobs": [j.get("id") or j.get("job") for j in jobs],
        }

    def _deployed_models(self) -> Iterator[str]:
        """Every target's current model (``name:version``), read only if the schedule is on: the
        MLOps loop asks each second."""
        for status in self.deployer.all_status():
            if current := status["current"]:
                yield f"{current['name']}:{current['version']}"

    def _start_ingest_points(self) -> None:
        influx = self.config.sinks.influxdb
        if influx.enabled:
            self._ingest_writer = threading.Thread(
                target=self._write_ingest_points,
                args=(influx.ingest_interval_s,),
                name="hub-ingest-points",
                daemon=True,
            )
            self._ingest_writer.start()

    def _gauges(self) -> HubGauges:
        return HubGauges(
            spool_batches=self.spool.stats.batches,
            spool_fsync_seconds=self.spool.stats.fsync_seconds,
            spool_bytes=self.spool.size_bytes(),
            spool_lag_bytes=self.sealer.lag_bytes,
            store_errors=self.sealer.store_errors,
            mqtt_connected=self.ingest.is_connected,
            ack_outstanding=self.ingest.ack_outstanding,
            cars_online=self._cars_online(),
        )

    def _cars_online(self) -> int:
        return sum(1 for car in self.catalog.list_cars() if car["state"] == "online")

    def _cleanup_partial_start(self) -> None:
        """Undo what a failed start got done (nothing here may raise over the original error)."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("ingest", lambda: self.ingest.stop(timeout=2)),
            ("sealer", lambda: self.sealer.stop(seal=False, timeout=5)),
            ("spool", lambda: self.spool.close(timeout=5)),
            ("sinks", lambda: self.sinks.stop(timeout=1)),
            ("catalog", lambda: self.catalog.close()),
        ]
        for name, stop in steps:
            if name in self.__dict__:
                try:
                    stop()
                except Exception:
                    log.debug("cleaning up %s after a failed start", name, exc_info=True)

    async def _start_api(self) -> None:
        app = create_app(self._api_parts())
        cert, key = self._api_tls()
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=self.config.api.access_log,
            lifespan="off",
            timeout_graceful_shutdown=5,
            ssl_certfile=cert,
            ssl_keyfile=key,
        )
        server = _EmbeddedServer(config)
        assert self._api_socket is not None
        self._server = server
        self._server_task = asyncio.create_task(server.serve(sockets=[self._api_socket]), name="hub-api")
        while not server.started:
            if self._server_task.done():
                self._server_task.result()
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.01)

    def _api_tls(self) -> tuple[str | None, str | None]:
        """The API's certificate and key files from ``[api]``: both, or neither (plain HTTP; the
        config checked that they come together)."""
        api = self.config.api
        if api.cert_file is None or api.key_file is None:
            return None, None
        for path in (api.cert_file, api.key_file):
            if not path.is_file():
                raise HubConfigError(f"api: no such file {path}")
        return str(api.cert_file), str(api.key_file)

    def _api_parts(self) -> ApiParts:
        return ApiParts(
            settings=self.config.api,
            token=self.api_token,
            catalog=self.catalog,
            store=self.store,
            sealer=self.sealer,
            ingest=self.ingest,
            deployer=self.deployer,
            counters=self.counters,
            topics=self.topics,
            telemetry=self.sqlite_sink,
            registry=self.registry,
            public_url=lambda: self.public_url,
            health=self.health,
            ingest_stats=self.ingest_stats,
            scoped_tokens=tuple((t.secret(), t.scope) for t in self.config.api.tokens),
            mlops=self.config.mlops,
            canaries=self.canaries,
            releases=self.releaser.all,
            feedback=self.feedback.dataset,
            collect_feedback=self.collect_feedback,
        )

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self._stop_event.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._server_task is not None:
            with contextlib.suppress(Exception):
                await self._server_task
        await asyncio.to_thread(self._stop_components)
        if self._api_socket is not None:
            self._api_socket.close()
        log.info("hub stopped")

    def _stop_components(self) -> None:
        # Stop taking messages first, then finish what is on disk, then close the stores.
        self.ingest.refuse_messages()
        self.spool.close()
        self.ingest.stop()
        self.sealer.stop(seal=True)
        self.sinks.stop()
        if self._ingest_writer is not None:
            self._ingest_writer.join(5)
        if self._mlops_thread is not None:
            self._mlops_thread.join(10)
        self.catalog.close()

    async def __aenter__(self) -> "HubService":
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- what the hub reports -----------------------------------------------------------------
    def ingest_stats(self) -> IngestStats:
        """Frames received, persisted, sealed, lost (gaps) and malformed, in total and per car."""
        return self.counters.snapshot(
            spool_bytes=self.spool.size_bytes(), spool_lag_bytes=self.sealer.lag_bytes
        )

    async def flush(self, timeout: float = 60.0) -> bool:  # noqa: ASYNC109 (runs in a thread)
        """Seal every frame that is durable now into shards (e.g. before training on it)."""
        return await asyncio.to_thread(self.sealer.flush, timeout)

    async def wait_sealed(self, car: str, session: str, timeout: float = 60.0) -> SessionManifest:  # noqa: ASYNC109
        """Wait until a session is closed (its ``recording_stopped`` event came after its last
        frame, or it went quiet for ``shards.session_close_s``) and return its manifest."""
        deadline = time.monotonic() + timeout
        while True:
            row = await asyncio.to_thread(self.catalog.get_session, car, session)
            # The catalog is written first: the manifest object follows a moment later.
            if (
                row is not None
                and row["state"] == "sealed"
                and await asyncio.to_thread(self._manifest_sealed, car, session)
            ):
                await asyncio.to_thread(self.sealer.sync)
                return manifest_from_row(row)
            if time.monotonic() > deadline:
                raise TimeoutError(f"session {car}/{session} not sealed after {timeout}s")
            await asyncio.sleep(0.05)

    def _manifest_sealed(self, car: str, session: str) -> bool:
        try:
            data = self.store.get(session_manifest_key(car, session))
        except NoSuchKey:
            return False
        return SessionManifest.from_json(data).state == "sealed"

    async def wait_connected(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109
        return await asyncio.to_thread(self.ingest.wait_connected, timeout)

    def health(self) -> dict[str, Any]:
        sinks = {
            w.name: {
                "healthy": w.healthy,
                "queued": w.queued,
                "written": w.stats.written,
                "dropped": w.stats.dropped,
                "errors": w.stats.errors,
                "last_error": w.stats.last_error,
            }
            for w in self.sinks.workers
        }
        spool_error = self.spool.error
        store_ok = self.sealer.last_error is None or self.sealer.store_errors == 0
        mqtt_ok = self.ingest.is_connected
        sealer_ok = self.sealer.alive
        ok = mqtt_ok and spool_error is None and sealer_ok
        return {
            "status": "ok" if ok else "degraded",
            "version": __version__,
            "uptime_s": round(time.time() - (self.started_at or time.time()), 3),
            "mqtt": {
                "connected": mqtt_ok,
                "broker": str(self.config.mqtt.broker),
                "connections": self.ingest.connections,
            },
            "spool": {
                "ok": spool_error is None,
                "error": None if spool_error is None else str(spool_error),
                "bytes": self.spool.size_bytes(),
                "lag_bytes": self.sealer.lag_bytes,
                "pending": self.spool.pending,
            },
            "store": {
                "url": self.store.url,
                "errors": self.sealer.store_errors,
                "last_error": self.sealer.last_error,
                "ok": store_ok,
                "sealer": self.config.shards.sealer,
                "sealer_alive": self.sealer.alive,
                "sealer_restarts": self.sealer.restarts,
            },
            "sinks": sinks,
        }

    def _write_ingest_points(self, interval: float) -> None:
        last: dict[str, int] = {}
        last_total = 0
        last_t = time.monotonic()
        while not self._stop_event.wait(interval):
            now = time.monotonic()
            dt = max(now - last_t, 1e-6)
            last_t = now
            stats = self.ingest_stats()
            cars: dict[str, dict[str, float]] = {}
            previous, last = last, {}  # only the cars still counted (the counters are bounded)
            for car, c in stats.cars.items():
                prev = previous.get(car, c.frames_persisted)
                cars[car] = {
                    "frames_persisted": float(c.frames_persisted),
                    "frames_sealed": float(c.frames_sealed),
                    "missing": float(c.missing),
                    "gaps": float(c.gaps),
                    "duplicates": float(c.duplicates),
                    "malformed": float(c.malformed),
                    "frames_per_s": (c.frames_persisted - prev) / dt,
                }
                last[car] = c.frames_persisted
            online = self._cars_online()
            hub = {
                "frames_per_s": (stats.frames_persisted - last_total) / dt if last_total else 0.0,
                "spool_bytes": float(stats.spool_bytes),
                "spool_lag_bytes": float(stats.spool_lag_bytes),
                "malformed": float(stats.malformed),
                "cars_online": float(online),
            }
            last_total = stats.frames_persisted
            self.sinks.put(IngestRecord(time.time(), cars, hub))


class _EmbeddedServer(uvicorn.Server):
    """uvicorn.Server without its signal handlers: the host program owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(config: HubConfig) -> None:
    """Run a hub until SIGINT or SIGTERM (``paddock hub serve``)."""
    hub = HubService(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await hub.start()
    try:
        await stop.wait()
    finally:
        await hub.stop()
