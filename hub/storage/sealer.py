"""From spool to object store: spooled frames become WebDataset shards and session manifests.

One thread follows the spool. Frames are grouped by (car, session) and de-duplicated by seq (a
message the broker resent after a crash is already there); a session's buffer becomes a shard when
it reaches the target size, when the session goes quiet, or when the car says the recording stopped.
A shard is uploaded first, then the catalog records it, then the manifest is rewritten; spool
segments are deleted only once every frame in them is in a shard. Killed between any two steps, the
hub replays the spool on start and ends in the same place.
"""

import builtins
import hashlib
import json
import logging
import math
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.config import ShardsConfig
from hub.storage import lidar
from hub.storage.catalog import Catalog
from hub.storage.seqset import SeqSet
from hub.storage.shards import shard_bytes
from hub.storage.spool import CONTROL, Position, SpoolLike, SpoolReader, WriteAheadSpool
from hub.telemetry.metrics import IngestCounters
from infra.store import NoSuchKey, ObjectStore
from schemas.dataset import (
    SessionManifest,
    SessionStats,
    ShardInfo,
    lidar_key,
    lidar_part_key,
    session_manifest_key,
    session_prefix,
    shard_key,
    shard_name,
)
from schemas.envelope import MAGIC, PREAMBLE_SIZE
from schemas.errors import ContractError
from schemas.payloads import frame_header
from schemas.shards import ReadStats, Sample, read_shard

log = logging.getLogger(__name__)
_U32 = struct.Struct("<I")

SessionKey = tuple[str, str]


@dataclass
class StatsAccumulator:
    """Running sums behind :class:`SessionStats` (kept in the catalog between seals)."""

    n: int = 0
    steering_sum: float = 0.0
    steering_sq: float = 0.0
    throttle_sum: float = 0.0
    throttle_sq: float = 0.0
    speed_n: int = 0
    speed_sum: float = 0.0
    t_min: int | None = None
    t_max: int | None = None
    width: int | None = None
    height: int | None = None

    def add(self, record: dict[str, Any]) -> None:
        s = float(record.get("steering", 0.0))
        t = float(record.get("throttle", 0.0))
        self.n += 1
        self.steering_sum += s
        self.steering_sq += s * s
        self.throttle_sum += t
        self.throttle_sq += t * t
        speed = record.get("speed")
        if isinstance(speed, int | float) and math.isfinite(speed):
            self.speed_n += 1
            self.speed_sum += float(speed)
        tc = record.get("t_capture_ns")
        if isinstance(tc, int):
            self.t_min = tc if self.t_min is None else min(self.t_min, tc)
            self.t_max = tc if self.t_max is None else max(self.t_max, tc)
        if self.width is None and isinstance(record.get("width"), int):
            self.width = record["width"]
            self.height = record.get("height")

    def stats(self) -> SessionStats:
        if self.n == 0:
            return SessionStats()

        def std(sq: float, total: float) -> float:
            mean = total / self.n
            return math.sqrt(max(sq / self.n - mean * mean, 0.0))

        duration = None
        if self.t_min is not None and self.t_max is not None:
            duration = (self.t_max - self.t_min) / 1e9
        return SessionStats(
            steering_mean=self.steering_sum / self.n,
            steering_std=std(self.steering_sq, self.steering_sum),
            throttle_mean=self.throttle_sum / self.n,
            throttle_std=std(self.throttle_sq, self.throttle_sum),
            speed_mean=self.speed_sum / self.speed_n if self.speed_n else None,
            duration_s=duration,
            width=self.width,
            height=self.height,
        )

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StatsAccumulator":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class SessionState:
    car: str
    session: str
    created: float
    updated: float
    state: str = "recording"
    received: SeqSet = field(default_factory=SeqSet)  # durable: sealed or buffered
    sealed: SeqSet = field(default_factory=SeqSet)
    trimmed: SeqSet = field(default_factory=SeqSet)
    shards: list[ShardInfo] = field(default_factory=list)
    next_shard: int = 0
    acc: StatsAccumulator = field(default_factory=StatsAccumulator)
    bytes: int = 0
    buffer: dict[int, tuple[dict[str, Any], "builtins.bytes"]] = field(default_factory=dict)
    buffer_bytes: int = 0
    buffer_min_segment: int | None = None
    last_frame: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> SessionKey:
        return (self.car, self.session)

    def gaps(self) -> list[tuple[int, int]]:
        """Seqs never received between the first and last sealed frame (trimmed ones are not lost)."""
        if not self.sealed:
            return []
        return self.sealed.union(self.trimmed).gaps(self.sealed.first, self.sealed.last)

    def live_missing(self) -> tuple[int, int]:
        """(missing seqs, gap count) over everything durable so far, for the live counters."""
        if not self.received:
            return 0, 0
        gaps = self.received.union(self.trimmed).gaps(self.received.first, self.received.last)
        return sum(b - a + 1 for a, b in gaps), len(gaps)

    def add_shard(self, name: str, samples: list[Sample], data: "builtins.bytes") -> ShardInfo:
        """Account a shard just written as ``name`` (``data``, the tar of ``samples``): its frames
        sealed, their stats, its entry with checksum."""
        seqs = [s.seq for s in samples]
        info = ShardInfo(
            name=name,
            frames=len(samples),
            bytes=len(data),
            seq_first=min(seqs),
            seq_last=max(seqs),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        self.shards.append(info)
        self.next_shard += 1
        for sample in samples:
            self.sealed.add(sample.seq)
            self.acc.add(sample.record)
        self.bytes += len(data)
        return info

    def manifest(self) -> SessionManifest:
        return SessionManifest(
            car=self.car,
            session=self.session,
            frame_count=len(self.sealed),
            seq_first=self.sealed.first,
            seq_last=self.sealed.last,
            gaps=self.gaps(),
            shards=list(self.shards),
            stats=self.acc.stats(),
            state="sealed" if self.state == "sealed" else "recording",
            created=self.created,
            updated=self.updated,
        )

    def to_row(self) -> dict[str, Any]:
        return {
            "car": self.car,
            "session": self.session,
            "state": self.state,
            "frame_count": len(self.sealed),
            "bytes": self.bytes,
            "seq_first": self.sealed.first,
            "seq_last": self.sealed.last,
            "sealed": self.sealed.to_json(),
            "trimmed": self.trimmed.to_json(),
            "shards": [s.to_dict() for s in self.shards],
            "stats": self.acc.to_json(),
            "next_shard": self.next_shard,
            "created": self.created,
            "updated": self.updated,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "SessionState":
        sealed = SeqSet.from_json(row["sealed"])
        return cls(
            car=row["car"],
            session=row["session"],
            created=row["created"],
            updated=row["updated"],
            state=row["state"],
            received=sealed.copy(),
            sealed=sealed,
            trimmed=SeqSet.from_json(row["trimmed"]),
            shards=[ShardInfo.from_dict(s) for s in row["shards"]],
            next_shard=row["next_shard"],
            acc=StatsAccumulator.from_json(row["stats"]),
            bytes=row["bytes"],
        )


def manifest_from_row(row: dict[str, Any]) -> SessionManifest:
    return SessionState.from_row(row).manifest()


class SessionNotFound(KeyError):
    pass


class SealerHandle(Protocol):
    """What the hub needs of a sealer, in-process (:class:`Sealer`) or in a process of its own
    (:class:`hub.storage.sealproc.SealerProcess`); :func:`hub.storage.sealproc.make_sealer` picks one."""

    @property
    def lag_bytes(self) -> int: ...
    @property
    def store_errors(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def alive(self) -> bool: ...
    @property
    def restarts(self) -> int: ...
    def start(self) -> None: ...
    def stop(self, seal: bool = True, timeout: float = 60.0) -> None: ...
    def flush(self, timeout: float = 60.0) -> bool: ...
    def sync(self, timeout: float = 10.0) -> None: ...
    def trim(self, car: str, session: str, start: int, end: int) -> SessionManifest: ...
    def delete(self, car: str, session: str) -> None: ...


class Sealer:
    """Follows the spool and keeps shards, manifests and the catalog's sessions up to date."""

    def __init__(
        self,
        spool: "WriteAheadSpool | SpoolLike",
        store: ObjectStore,
        catalog: Catalog,
        counters: IngestCounters,
        *,
        target_bytes: int = 4 * 1024 * 1024,
        idle_seal_s: float = 3.0,
        session_close_s: float = 30.0,
        busy_share: float = 1.0,
        max_lag_bytes: int = 1024 * 1024 * 1024,
        on_sealed: Callable[[SessionManifest], None] | None = None,
    ) -> None:
        self.spool = spool
        self.store = store
        self.catalog = catalog
        self.counters = counters
        self.target_bytes = target_bytes
        self.idle_seal_s = idle_seal_s
        self.session_close_s = session_close_s
        self.on_sealed = on_sealed
        self.busy_share = busy_share
        self._yield = True
        self.max_lag_bytes = max_lag_bytes
        self.lock = threading.RLock()
        self.sessions: dict[SessionKey, SessionState] = {}
        self.tombstones: dict[SessionKey, Position] = {}
        self._missing: dict[SessionKey, tuple[int, int]] = {}
        self._close_requests: deque[SessionKey] = deque()
        self._flush_requests: list[tuple[Position, threading.Event]] = []
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: SpoolReader | None = None
        self.caught_up_to: Position = (0, 0)
        self.dropped_deleted = 0
        self.store_errors = 0
        self.last_error: str | None = None

    @classmethod
    def from_config(
        cls,
        shards: ShardsConfig,
        spool: "WriteAheadSpool | SpoolLike",
        store: ObjectStore,
        catalog: Catalog,
        counters: IngestCounters,
        *,
        busy_share: float | None = None,
    ) -> "Sealer":
        """A sealer as ``[shards]`` configures it; ``busy_share`` overrides the configured one (a sealer
        in a process of its own need not hold back)."""
        mib = 1024 * 1024
        return cls(
            spool,
            store,
            catalog,
            counters,
            target_bytes=int(shards.target_mb * mib),
            idle_seal_s=shards.idle_seal_s,
            session_close_s=shards.session_close_s,
            busy_share=shards.busy_share if busy_share is None else busy_share,
            max_lag_bytes=int(shards.max_lag_mb * mib),
        )

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.tombstones = self.catalog.tombstones()
        now = time.monotonic()
        for row in self.catalog.all_sessions():
            state = SessionState.from_row(row)
            self._note_missing(state, sealed_only=True)
            if state.state == "recording":  # closes after session_close_s unless frames come
                state.last_frame = now
                self.sessions[state.key] = state
        self._reader = SpoolReader(self.spool)
        self._thread = threading.Thread(target=self._run, name="hub-sealer", daemon=True)
        self._thread.start()

    def stop(self, seal: bool = True, timeout: float = 60.0) -> None:
        if seal and self._thread is not None and self._thread.is_alive():
            self.flush(timeout=timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._reader is not None:
            self._reader.close()

    def flush(self, timeout: float = 60.0, target: Position | None = None) -> bool:
        """Seal everything received so far (or up to ``target``); True once done, False on timeout."""
        deadline = time.monotonic() + timeout
        while target is None and self.spool.pending and time.monotonic() < deadline:
            time.sleep(0.005)  # let the writer make it durable
        done = threading.Event()
        with self._flush_lock:
            self._flush_requests.append((target or self.spool.durable, done))
        return done.wait(max(deadline - time.monotonic(), 0.0))

    def sync(self, timeout: float = 10.0) -> None:
        """Nothing to do: an in-process sealer updates the hub's counters as it goes."""

    @property
    def alive(self) -> bool:
        """Whether the sealing thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def restarts(self) -> int:
        return 0  # a thread is not restarted; a process is (SealerProcess)

    def request_close(self, car: str, session: str) -> None:
        """Seal what a session has buffered and mark it sealed, at the next chance.

        Ingest does not call this for ``recording_stopped``: it writes a control record into the
        spool instead, so the close lands exactly after the session's last frame."""
        self._close_requests.append((car, session))

    @property
    def lag_bytes(self) -> int:
        """Durable spool bytes not yet read (approximate across segments)."""
        reader = self._reader
        if reader is None:
            return 0
        durable = self.spool.durable
        if reader.position[0] == durable[0]:
            return max(durable[1] - reader.position[1], 0)
        return max(self.spool.size_bytes() - reader.position[1], 0)

    # --- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        assert self._reader is not None
        last_housekeeping = 0.0
        while not self._stop.is_set():
            durable_before = self.spool.durable
            started = time.perf_counter()
            try:
                n = self._consume(500)
            except Exception:
                log.exception("sealer failed; retrying")
                self._stop.wait(1.0)
                continue
            if n == 0:
                self.caught_up_to = durable_before
                self._serve_requests()
            now = time.monotonic()
            if now - last_housekeeping >= 0.25 or n == 0:
                last_housekeeping = now
                try:
                    self._housekeeping(now)
                except Exception:
                    log.exception("sealer housekeeping failed")
            if n == 0:
                self.spool.wait_durable(self._reader.position, 0.25)
            elif self.busy_share < 1.0 and self.spool.busy() and self.lag_bytes < self.max_lag_bytes:
                # Frames are arriving: acknowledging them comes first. Take at most busy_share of the
                # time (and of the interpreter) and catch up when the burst is over.
                worked = time.perf_counter() - started
                self._stop.wait(min(worked * (1 - self.busy_share) / self.busy_share, 0.2))

    def _consume(self, limit: int) -> int:
        assert self._reader is not None
        n = 0
        touched: set[SessionKey] = set()
        with self.lock:
            for position, body in self._reader.read(limit):
                n += 1
                if n % 32 == 0 and self._yield:
                    time.sleep(0)  # hand the interpreter to the network thread often, not every 5 ms
                key = self._add(position, body)
                if key is None:
                    continue
                touched.add(key)
                state = self.sessions[key]
                if state.buffer_bytes >= self.target_bytes:
                    self._seal(state)
            for key in touched:
                touched_state = self.sessions.get(key)
                if touched_state is not None:
                    self._note_missing(touched_state)
        return n

    def _add(self, position: Position, body: bytes) -> SessionKey | None:
        if body.startswith(CONTROL):
            self._control(body)
            return None
        try:
            # Validated on arrival (hub.ingest.check_frame): only split it here.
            if body[:4] != MAGIC:
                raise ContractError("not an envelope")
            (head_len,) = _U32.unpack_from(body, 4)
            end = PREAMBLE_SIZE + head_len
            header_bytes = body[PREAMBLE_SIZE:end]
            payload = body[end:]
            record = frame_header(header_bytes)  # again: a spool written by an older hub may hold anything
            header = json.loads(header_bytes)
            car, session, seq = record.car, record.session, record.seq
        except (ContractError, KeyError, ValueError, TypeError, RecursionError, struct.error) as exc:
            self._quarantine(position, body, exc)
            return None
        key = (car, session)
        tomb = self.tombstones.get(key)
        if tomb is not None and position <= tomb:
            self.dropped_deleted += 1
            return None
        state = self._state(car, session)
        if seq in state.received or seq in state.trimmed:
            self.counters.car(car).duplicates += 1
            return key
        state.received.add(seq)
        state.buffer[seq] = (header, payload)
        state.buffer_bytes += len(payload) + 256
        if state.buffer_min_segment is None:
            state.buffer_min_segment = position[0]
        state.last_frame = time.monotonic()
        if state.state != "recording":
            state.state = "recording"
        return key

    def _quarantine(self, position: Position, body: bytes, exc: Exception) -> None:
        """Keep a record no session can hold where an operator can look at it, and count it."""
        key = f"quarantine/{position[0]:010d}-{position[1]:012d}.env"
        self._put(key, body)
        reason = str(exc).split(":", 1)[0][:60]
        self.counters.add_malformed(None, "sealer", reason)
        log.warning("quarantined a spool record as %s: %s", key, str(exc)[:200])

    def _control(self, body: bytes) -> None:
        try:
            doc = json.loads(body[len(CONTROL) :])
            car, session = doc["close"]
        except (ValueError, KeyError, TypeError):
            log.error("unreadable control record in the spool: %r", body[:100])
            return
        state = self.sessions.get((car, session))
        if state is not None:
            self._seal(state, close=True)

    def _state(self, car: str, session: str) -> SessionState:
        key = (car, session)
        state = self.sessions.get(key)
        if state is None:
            row = self.catalog.get_session(car, session)
            now = time.time()
            state = (
                SessionState.from_row(row) if row else SessionState(car, session, created=now, updated=now)
            )
            self.sessions[key] = state
        return state

    def _note_missing(self, state: SessionState, sealed_only: bool = False) -> None:
        if sealed_only:
            gaps = state.gaps()
            value = (sum(b - a + 1 for a, b in gaps), len(gaps))
        else:
            value = state.live_missing()
        if self._missing.get(state.key) == value:
            return
        self._missing[state.key] = value
        car = state.car
        totals = [v for (c, _), v in self._missing.items() if c == car]
        counters = self.counters.car(car)
        counters.missing = sum(v[0] for v in totals)
        counters.gaps = sum(v[1] for v in totals)

    def _housekeeping(self, now: float) -> None:
        with self.lock:
            while self._close_requests:
                key = self._close_requests.popleft()
                state = self.sessions.get(key)
                if state is not None:
                    self._seal(state, close=True)
            for state in list(self.sessions.values()):
                idle = now - state.last_frame
                if state.buffer and idle >= self.idle_seal_s:
                    self._seal(state)
                if state.state == "recording" and idle >= self.session_close_s:
                    self._seal(state, close=True)
                if state.state == "sealed" and not state.buffer:
                    del self.sessions[state.key]  # reloaded from the catalog if frames come
            self._release_segments()

    def _serve_requests(self) -> None:
        with self._flush_lock:
            ready = [(p, e) for p, e in self._flush_requests if p <= self.caught_up_to]
            self._flush_requests = [(p, e) for p, e in self._flush_requests if p > self.caught_up_to]
        if not ready:
            return
        with self.lock:
            for state in list(self.sessions.values()):
                if state.buffer:
                    self._seal(state)
            self._release_segments()
        for _, event in ready:
            event.set()

    def _release_segments(self) -> None:
        assert self._reader is not None
        oldest = self._reader.position[0]
        for state in self.sessions.values():
            if state.buffer_min_segment is not None:
                oldest = min(oldest, state.buffer_min_segment)
        self.spool.release_before(oldest)

    # --- sealing ------------------------------------------------------------------------------
    def _seal(self, state: SessionState, close: bool = False) -> None:
        if state.buffer:
            seqs = sorted(state.buffer)
            samples = [Sample(seq, state.buffer[seq][1], state.buffer[seq][0]) for seq in seqs]
            data = shard_bytes(samples)
            index = state.next_shard
            scans = lidar.part_csv(samples)
            if scans is not None:  # before the shard: a shard in the store always has its scans
                self._put(lidar_part_key(state.car, state.session, index), scans)
            self._put(shard_key(state.car, state.session, index), data)
            state.add_shard(shard_name(index), samples, data)
            state.buffer.clear()
            state.buffer_bytes = 0
            state.buffer_min_segment = None
            self.counters.car(state.car).frames_sealed += len(samples)
            self.counters.shards_sealed += 1
            self.counters.shard_bytes += len(data)
        elif not close or state.state == "sealed":
            return
        if close:
            state.state = "sealed"
            self._merge_lidar(state.car, state.session)
        state.updated = time.time()
        self._commit(state)

    def _merge_lidar(self, car: str, session: str) -> None:
        """Write the session's ``lidar.csv`` from its parts (nothing for a car without a lidar)."""
        parts = lidar.part_keys(self.store.list(session_prefix(car, session)), car, session)
        merged = lidar.merged_csv(parts, self.store.get) if parts else None
        if merged is not None:
            self._put(lidar_key(car, session), merged)
        elif self.store.exists(lidar_key(car, session)):
            self.store.delete(lidar_key(car, session))  # every scan was trimmed away

    def _commit(self, state: SessionState) -> None:
        """Catalog first (it decides what is sealed), then the manifest object."""
        self.catalog.save_session(state.to_row())
        manifest = state.manifest()
        self._put(session_manifest_key(state.car, state.session), manifest.to_json())
        self._note_missing(state)
        if self.on_sealed is not None:
            try:
                self.on_sealed(manifest)
            except Exception:
                log.exception("on_sealed callback failed")

    def _put(self, key: str, data: bytes) -> None:
        delay = 0.5
        while True:
            try:
                self.store.put(key, data)
                return
            except Exception as exc:
                self.store_errors += 1
                self.last_error = f"{key}: {exc}"
                if self._stop.is_set():
                    raise
                log.warning("object store write of %s failed (%s); retrying in %.1fs", key, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    # --- edits from the API -------------------------------------------------------------------
    def trim(self, car: str, session: str, start: int, end: int) -> SessionManifest:
        """Remove frames ``start..end`` (inclusive) from a session's shards."""
        with self.lock:
            state = self._existing(car, session)
            if state.buffer:
                self._seal(state)
            hi = end if state.received.last is None else min(end, state.received.last)
            new_shards: list[ShardInfo] = []
            for info in state.shards:
                index = int(info.name[6:12])
                key = shard_key(car, session, index)
                if info.seq_last < start or info.seq_first > end:
                    new_shards.append(info)
                    continue
                samples = self._read(key)
                kept = [s for s in samples if not start <= s.seq <= end]
                part, scans = lidar_part_key(car, session, index), lidar.part_csv(kept)
                if scans is not None:
                    self._put(part, scans)
                elif self.store.exists(part):
                    self.store.delete(part)
                if not kept:
                    self.store.delete(key)
                    continue
                data = shard_bytes(kept)
                self._put(key, data)
                new_shards.append(
                    ShardInfo(
                        name=info.name,
                        frames=len(kept),
                        bytes=len(data),
                        seq_first=kept[0].seq,
                        seq_last=kept[-1].seq,
                        sha256=hashlib.sha256(data).hexdigest(),
                    )
                )
            state.shards = new_shards
            state.sealed.remove_range(start, end)
            state.received.remove_range(start, end)
            if start <= hi:
                state.trimmed.add_range(start, hi)
            state.acc = StatsAccumulator()
            for info in state.shards:
                for sample in self._read(shard_key(car, session, int(info.name[6:12]))):
                    state.acc.add(sample.record)
            state.bytes = sum(s.bytes for s in state.shards)
            state.updated = time.time()
            if state.state == "sealed":
                self._merge_lidar(car, session)
            self._commit(state)
            return state.manifest()

    def delete(self, car: str, session: str, position: Position | None = None) -> None:
        """Delete a session's shards, manifest and catalog entry; frames already spooled are dropped."""
        with self.lock:
            state = self.sessions.pop((car, session), None)
            row = self.catalog.get_session(car, session)
            if state is None and row is None:
                raise SessionNotFound(f"{car}/{session}")
            shards = state.shards if state is not None else [ShardInfo.from_dict(s) for s in row["shards"]]  # type: ignore[index]
            for info in shards:
                self.store.delete(shard_key(car, session, int(info.name[6:12])))
            listing = self.store.list(session_prefix(car, session))
            for key in [*lidar.part_keys(listing, car, session), lidar_key(car, session)]:
                if key in listing:
                    self.store.delete(key)
            self.store.delete(session_manifest_key(car, session))
            position = position or self.spool.durable
            self.catalog.delete_session(car, session, position)
            self.tombstones[(car, session)] = position
            self._missing.pop((car, session), None)
            counters = self.counters.car(car)
            totals = [v for (c, _), v in self._missing.items() if c == car]
            counters.missing = sum(v[0] for v in totals)
            counters.gaps = sum(v[1] for v in totals)

    def _existing(self, car: str, session: str) -> SessionState:
        state = self.sessions.get((car, session))
        if state is not None:
            return state
        row = self.catalog.get_session(car, session)
        if row is None:
            raise SessionNotFound(f"{car}/{session}")
        state = SessionState.from_row(row)
        self.sessions[state.key] = state
        return state

    def _read(self, key: str) -> list[Sample]:
        stats = ReadStats()
        try:
            with self.store.open(key) as fh:
                samples = list(read_shard(fh, stats))
        except NoSuchKey:
            log.error("shard %s is listed in its manifest but missing from the store", key)
            return []
        if stats.skipped:
            log.warning("shard %s: %d members skipped: %s", key, stats.skipped, "; ".join(stats.reasons[:3]))
        return samples
