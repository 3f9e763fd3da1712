"""Telemetry sinks, fanned out: each has its own queue, batches and retries on its own thread.

Putting a record into a sink never blocks: a full queue drops its oldest record (counted). A slow or
dead sink therefore only loses its own telemetry backlog; frames never pass through a sink at all.

Records are the parsed wire messages; each sink turns them into its own form:
SQLite keeps them as rows for the hub's own views, InfluxDB as points (line protocol):

=============  =====================================  =============================================
measurement    tags                                   fields (all floats)
=============  =====================================  =============================================
telemetry      car, mode, model?, session?            every numeric Telemetry field (+ recording,
                                                      off_track as 0/1)
laps           car, model?, mode?                     lap, lap_time_s, off_track_count
events         car, type                              count (=1) and the event's numeric fields
car_status     car                                    online (0/1), bdseq
ingest         car                                    frames_persisted, frames_sealed, missing, gaps,
                                                      duplicates, malformed, frames_per_s
hub_ingest     (none)                                 frames_per_s, spool_bytes, spool_lag_bytes,
                                                      malformed, cars_online
job_progress   job, kind, stage                       epoch, epochs, step, loss, val_loss and every
                                                      metric (an optimize job: best, mean, std,
                                                      worst, evaluations, evals_per_s per generation;
                                                      an rl job: mean_reward, completion_pct,
                                                      episodes_*, best_lap_time_s per iteration)
=============  =====================================  =============================================
"""

import json
import logging
import math
import sqlite3
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hub.config import SinkQueueConfig, SinksConfig, read_secret
from infra.sqlite import ThreadConnections
from schemas.messages import CarStatus, Event, JobProgress, LapEvent, Telemetry

log = logging.getLogger(__name__)


# --- records --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TelemetryRecord:
    car: str
    msg: Telemetry


@dataclass(frozen=True, slots=True)
class EventRecord:
    car: str
    event: Event
    session: str | None = None


@dataclass(frozen=True, slots=True)
class StatusRecord:
    car: str
    status: CarStatus


@dataclass(frozen=True, slots=True)
class IngestRecord:
    """The hub's own ingest counters at one instant (per car, plus hub-wide values)."""

    ts: float
    cars: dict[str, dict[str, float]]
    hub: dict[str, float]


@dataclass(frozen=True, slots=True)
class JobProgressRecord:
    """A trainer's progress report on one job (an epoch, a generation)."""

    progress: JobProgress


Record = TelemetryRecord | EventRecord | StatusRecord | IngestRecord | JobProgressRecord


class Sink(Protocol):
    name: str

    def write(self, batch: list[Record]) -> None: ...
    def housekeeping(self) -> None: ...
    def close(self) -> None: ...


# --- the worker ---------------------------------------------------------------------------------
@dataclass
class SinkStats:
    written: int = 0
    dropped: int = 0
    errors: int = 0
    batches: int = 0
    last_error: str | None = None
    last_write: float | None = None


class SinkWorker:
    """A bounded queue and a thread that writes it to one sink in batches, retrying with backoff."""

    def __init__(
        self,
        sink: Sink,
        *,
        queue_size: int,
        batch_size: int,
        flush_interval_s: float,
        retry_max_s: float,
        housekeeping_s: float = 60.0,
    ) -> None:
        self.sink = sink
        self.name = sink.name
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_max_s = retry_max_s
        self.housekeeping_s = housekeeping_s
        self.stats = SinkStats()
        self._queue: deque[Record] = deque(maxlen=queue_size)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hub-sink-{sink.name}", daemon=True)
        self._healthy = True

    def start(self) -> None:
        self._thread.start()

    def put(self, record: Record) -> None:
        q = self._queue
        if len(q) == q.maxlen:
            self.stats.dropped += 1  # deque(maxlen) drops the oldest on append
        q.append(record)
        if len(q) >= self.batch_size:
            self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def healthy(self) -> bool:
        return self._healthy

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is written (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            if not self._queue and not self._busy:
                return True
            self._wake.set()
            time.sleep(0.02)
        return False

    _busy = False

    def stop(self, timeout: float = 5.0) -> None:
        if self._healthy:  # a sink that is down gets no grace period: its backlog is telemetry
            self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        try:
            self.sink.close()
        except Exception:
            log.exception("closing sink %s", self.name)

    def _run(self) -> None:
        last_housekeeping = time.monotonic()
        backoff = 0.0
        batch: list[Record] = []
        while True:
            if not batch:
                self._wake.wait(self.flush_interval_s)
                self._wake.clear()
                if self._stop.is_set() and not self._queue:
                    return
                while self._queue and len(batch) < self.batch_size:
                    batch.append(self._queue.popleft())
            if batch:
                self._busy = True
                try:
                    self.sink.write(batch)
                except Exception as exc:
                    self.stats.errors += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    if self._healthy:
                        log.warning("sink %s: write failed (%s); retrying", self.name, self.stats.last_error)
                    self._healthy = False
                    backoff = min(max(backoff * 2, 0.2), self.retry_max_s)
                    if self._stop.wait(backoff):
                        self._busy = False
                        return  # stopping: the unwritten batch is telemetry, not frames
                    continue
                else:
                    if not self._healthy:
                        log.info("sink %s: writing again", self.name)
                    self._healthy = True
                    backoff = 0.0
                    self.stats.written += len(batch)
                    self.stats.batches += 1
                    self.stats.last_write = time.time()
                    batch = []
                finally:
                    self._busy = bool(batch)
            now = time.monotonic()
            if now - last_housekeeping >= self.housekeeping_s:
                last_housekeeping = now
                try:
                    self.sink.housekeeping()
                except Exception:
                    log.exception("sink %s housekeeping failed", self.name)


class Fanout:
    """Hands every record to every sink worker."""

    def __init__(self, workers: list[SinkWorker]) -> None:
        self.workers = workers

    def put(self, record: Record) -> None:
        for w in self.workers:
            w.put(record)

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def stop(self, timeout: float = 5.0) -> None:
        for w in self.workers:
            w.stop(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        return all(w.flush(timeout) for w in self.workers)

    def get(self, name: str) -> SinkWorker | None:
        return next((w for w in self.workers if w.name == name), None)


# --- points (InfluxDB) ----------------------------------------------------------------------------
_TELEMETRY_SKIP = {"ts", "mode", "session", "model"}


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True, slots=True)
class PointData:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float]
    ts_ns: int


def _ns(ts: float) -> int:
    """Epoch seconds (a float: about 0.2 µs resolution today) to ns, rounded to the microsecond."""
    return round(ts * 1e6) * 1000


def to_points(record: Record) -> list[PointData]:
    """The InfluxDB points of one record (see the module docstring for the schema)."""
    if isinstance(record, TelemetryRecord):
        m = record.msg
        tags = {"car": record.car, "mode": m.mode}
        if m.model:
            tags["model"] = m.model
        if m.session:
            tags["session"] = m.session
        fields: dict[str, float] = {}
        for name, value in m.model_dump(exclude_none=True).items():
            if name in _TELEMETRY_SKIP:
                continue
            v = _num(value)
            if v is not None:
                fields[name] = v
        return [PointData("telemetry", tags, fields, _ns(m.ts))]
    if isinstance(record, EventRecord):
        ev = record.event
        ts = _ns(ev.ts)
        fields = {"count": 1.0}
        for name, value in ev.model_dump(exclude_none=True).items():
            if name in ("ts", "seq", "type"):
                continue
            v = _num(value)
            if v is not None:
                fields[name] = v
        points = [PointData("events", {"car": record.car, "type": ev.type}, fields, ts)]
        if isinstance(ev, LapEvent):
            tags = {"car": record.car}
            if ev.model:
                tags["model"] = ev.model
            if ev.mode:
                tags["mode"] = ev.mode
            points.append(
                PointData(
                    "laps",
                    tags,
                    {
                        "lap": float(ev.lap),
                        "lap_time_s": float(ev.lap_time_s),
                        "off_track_count": float(ev.off_track_count),
                    },
                    ts,
                )
            )
        return points
    if isinstance(record, StatusRecord):
        s = record.status
        return [
            PointData(
                "car_status",
                {"car": record.car},
                {"online": 1.0 if s.state == "online" else 0.0, "bdseq": float(s.bdseq)},
                _ns(s.ts),
            )
        ]
    if isinstance(record, JobProgressRecord):
        return _job_points(record.progress)
    ts = _ns(record.ts)
    points = [PointData("ingest", {"car": car}, dict(values), ts) for car, values in record.cars.items()]
    points.append(PointData("hub_ingest", {}, dict(record.hub), ts))
    return points


def _job_points(p: JobProgress) -> list[PointData]:
    fields: dict[str, float] = {}
    for name in ("epoch", "epochs", "step", "total_steps", "loss", "val_loss"):
        v = _num(getattr(p, name))
        if v is not None:
            fields[name] = v
    for name, value in p.metrics.items():
        v = _num(value)
        if v is not None:
            fields.setdefault(name, v)
    if not fields:  # a state change without numbers (started, done) is in the catalog
        return []
    return [
        PointData("job_progress", {"job": p.job, "kind": p.kind, "stage": p.stage or "-"}, fields, _ns(p.ts))
    ]


def line_protocol(points: list[PointData]) -> list[str]:
    """Line protocol, through influxdb-client's Point (the same escaping the v2 writer uses)."""
    from influxdb_client.client.write.point import Point
    from influxdb_client.domain.write_precision import WritePrecision

    lines: list[str] = []
    for p in points:
        if not p.fields:
            continue
        point: Any = Point(p.measurement)  # type: ignore[no-untyped-call]
        for k, v in p.tags.items():
            point.tag(k, v)
        for k, fv in p.fields.items():
            point.field(k, fv)
        point.time(p.ts_ns, WritePrecision.NS)
        lines.append(str(point.to_line_protocol()))
    return lines


class InfluxSink:
    """InfluxDB through ``influxdb-client`` (v2 write API), or plain line protocol on /write (v1)."""

    name = "influxdb"

    def __init__(
        self,
        url: str,
        *,
        api: str = "v2",
        token: str | None = None,
        org: str = "paddock",
        bucket: str = "paddock",
        database: str = "paddock",
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.api = api
        self.org = org
        self.bucket = bucket
        self.database = database
        self.retention_policy = retention_policy
        self.username = username
        self.password = password
        self.timeout_s = timeout_s
        self._client: Any = None
        self._write_api: Any = None
        if api == "v2":
            from influxdb_client.client.influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            # Retries are this sink's job (SinkWorker), not urllib3's: one failed write returns fast.
            self._client = InfluxDBClient(
                url=url, token=token or "", org=org, timeout=int(timeout_s * 1000), retries=False
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, batch: list[Record]) -> None:
        lines = line_protocol([p for r in batch for p in to_points(r)])
        if not lines:
            return
        if self.api == "v2":
            from influxdb_client.domain.write_precision import WritePrecision

            self._write_api.write(
                bucket=self.bucket, org=self.org, record=lines, write_precision=WritePrecision.NS
            )
            return
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        if self.username:
            params["u"] = self.username
            params["p"] = self.password or ""
        req = urllib.request.Request(
            f"{self.url}/write?{urllib.parse.urlencode(params)}",
            data="\n".join(lines).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            if resp.status not in (200, 204):
                raise RuntimeError(f"InfluxDB /write answered {resp.status}")

    def housekeeping(self) -> None:
        pass

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# --- SQLite -------------------------------------------------------------------------------------
_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, car TEXT NOT NULL,
    session TEXT, model TEXT, mode TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS telemetry_car_ts ON telemetry (car, ts);
CREATE INDEX IF NOT EXISTS telemetry_ts ON telemetry (ts);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, car TEXT NOT NULL,
    type TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_car_ts ON events (car, ts);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
"""


@dataclass
class SqliteSink:
    """Telemetry and events in SQLite, with bounded retention (age and row count)."""

    path: Path
    retention_s: float = 7 * 24 * 3600.0
    max_rows: int = 1_000_000
    name: str = "sqlite"
    _connections: ThreadConnections = field(init=False)

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connections = ThreadConnections(self.path)
        self._conn().executescript(_SQLITE_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self._connections.get()

    def write(self, batch: list[Record]) -> None:
        telemetry = []
        events = []
        for r in batch:
            if isinstance(r, TelemetryRecord):
                m = r.msg
                telemetry.append(
                    (m.ts, r.car, m.session, m.model, m.mode, m.model_dump_json(exclude_none=True))
                )
            elif isinstance(r, EventRecord):
                ev = r.event
                events.append((ev.ts, r.car, ev.type, ev.model_dump_json(exclude_none=True)))
        if not telemetry and not events:
            return
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT INTO telemetry (ts, car, session, model, mode, data) VALUES (?, ?, ?, ?, ?, ?)",
                telemetry,
            )
            conn.executemany("INSERT INTO events (ts, car, type, data) VALUES (?, ?, ?, ?)", events)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def housekeeping(self) -> None:
        """Delete rows past the retention age, then the oldest beyond ``max_rows``."""
        conn = self._conn()
        cutoff = time.time() - self.retention_s
        for table in ("telemetry", "events"):
            conn.execute(f"DELETE FROM {table} WHERE ts < ?", (cutoff,))
            row = conn.execute(f"SELECT max(id) - ? FROM {table}", (self.max_rows,)).fetchone()
            if row and row[0] is not None and row[0] > 0:
                conn.execute(f"DELETE FROM {table} WHERE id <= ?", (row[0],))

    def telemetry(self, car: str, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT data FROM "
            "(SELECT id, data FROM telemetry WHERE car=? AND ts >= ? ORDER BY id DESC LIMIT ?) "
            "ORDER BY id",
            (car, since or 0.0, limit),
        )
        return [json.loads(r["data"]) for r in rows]

    def events(
        self, car: str | None = None, since: float | None = None, limit: int = 100, type: str | None = None
    ) -> list[dict[str, Any]]:
        clauses: list[str] = ["ts >= ?"]
        args: list[Any] = [since or 0.0]
        if car:
            clauses.append("car = ?")
            args.append(car)
        if type:
            clauses.append("type = ?")
            args.append(type)
        rows = self._conn().execute(
            f"SELECT car, data FROM (SELECT id, car, data FROM events WHERE {' AND '.join(clauses)} "
            "ORDER BY id DESC LIMIT ?) ORDER BY id",
            [*args, limit],
        )
        return [{"car": r["car"], **json.loads(r["data"])} for r in rows]

    def count(self, table: str) -> int:
        if table not in ("telemetry", "events"):
            raise ValueError(table)
        return int(self._conn().execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        self._connections.close()


def sinks_from_config(config: SinksConfig, telemetry_path: Path) -> tuple[Fanout, SqliteSink | None]:
    """The sink workers ``[sinks]`` enables, and the SQLite sink (the API reads telemetry from it)."""
    workers = []
    sqlite_sink = None
    s = config.sqlite
    if s.enabled:
        sqlite_sink = SqliteSink(telemetry_path, retention_s=s.retention_s, max_rows=s.max_rows)
        workers.append(_worker(sqlite_sink, s))
    i = config.influxdb
    if i.enabled:
        influx = InfluxSink(
            i.url,
            api=i.api,
            token=read_secret(i.token, i.token_file, "sinks.influxdb.token_file"),
            org=i.org,
            bucket=i.bucket,
            database=i.database,
            retention_policy=i.retention_policy,
            username=i.username,
            password=i.password.get_secret_value() if i.password else None,
            timeout_s=i.timeout_s,
        )
        workers.append(_worker(influx, i))
    return Fanout(workers), sqlite_sink


def _worker(sink: Sink, queue: SinkQueueConfig) -> SinkWorker:
    return SinkWorker(
        sink,
        queue_size=queue.queue_size,
        batch_size=queue.batch_size,
        flush_interval_s=queue.flush_interval_s,
        retry_max_s=queue.retry_max_s,
    )
