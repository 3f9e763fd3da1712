"""Sealing in a process of its own, so that it never competes with ingest for the interpreter.

Python runs one thread at a time per process. Acknowledging frames (the network thread and the
spool writer) is the hub's latency-critical path; building shards, hashing and uploading them is
throughput work that can run on another core. The hub starts ``python -P -m hub.storage.sealproc`` as a child:

* the child follows the spool files (a view of a spool another process writes: a record still being
  written is read next time, never taken for a torn one) and runs the same :class:`hub.storage.sealer.Sealer`;
* requests (flush, trim, delete, stop) and replies travel as JSON lines on stdin/stdout, and the
  child reports its counters every 100 ms the same way;
* the child dies with the hub (``PR_SET_PDEATHSIG`` and end of stdin), and the hub starts a new one
  if it dies alone: the spool makes every restart safe.
"""

import contextlib
import ctypes
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from hub.config import HubConfig
from hub.storage.catalog import Catalog, CatalogError
from hub.storage.sealer import Sealer, SealerHandle, SessionNotFound
from hub.storage.spool import (
    Position,
    SpoolStats,
    WriteAheadSpool,
    list_segments,
    release_segments,
    segment_path,
    segments_size,
)
from hub.telemetry.metrics import IngestCounters
from infra.store import NoSuchKey, ObjectStore, StoreError, open_store
from schemas.dataset import SessionManifest

log = logging.getLogger(__name__)


class SealerProcessError(RuntimeError):
    """The sealer process is gone or did not answer."""


# --- child side ---------------------------------------------------------------------------------
class SpoolView:
    """A spool written by another process, seen from the sealer: durable is what is on disk."""

    live_tail = True

    def __init__(self, directory: Path, first_segment: int) -> None:
        self.directory = directory
        self.first_segment = first_segment
        self.stats = SpoolStats()
        self.pending = 0
        self._last = (0, 0)
        self._changed = 0.0

    @property
    def durable(self) -> Position:
        segments = list_segments(self.directory)
        if not segments:
            return (self.first_segment, 0)
        last = segments[-1]
        try:
            size = segment_path(self.directory, last).stat().st_size
        except FileNotFoundError:
            size = 0
        position = (last, size)
        if position != self._last:
            self._last = position
            self._changed = time.monotonic()
        return position

    def busy(self, window: float = 0.1) -> bool:
        _ = self.durable
        return time.monotonic() - self._changed < window

    def wait_durable(self, after: Position, timeout: float) -> Position:
        deadline = time.monotonic() + timeout
        while True:
            position = self.durable
            if position > after or time.monotonic() >= deadline:
                return position
            time.sleep(min(0.01, max(deadline - time.monotonic(), 0)))

    def release_before(self, segment: int) -> list[int]:
        segments = list_segments(self.directory)
        if not segments:
            return []
        return release_segments(self.directory, min(segment, segments[-1]))  # never the one written

    def size_bytes(self) -> int:
        return segments_size(self.directory)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the hub dies, whatever way it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class _Child:
    def __init__(self, spec: dict[str, Any], out: IO[str]) -> None:
        self.out = out
        self.out_lock = threading.Lock()
        cfg = HubConfig.model_validate(spec["config"])
        store = spec["store"]
        self.catalog = Catalog(cfg.catalog_path)
        self.store = open_store(
            store["url"],
            endpoint_url=store["endpoint_url"],
            region=store["region"],
            access_key_id=store["access_key_id"],
            secret_access_key=store["secret_access_key"],
            create_bucket=store["create_bucket"],
        )
        self.counters = IngestCounters()
        self.view = SpoolView(cfg.spool_dir, spec["first_segment"])
        self.sealer = Sealer.from_config(  # its own process: no need to hold back
            cfg.shards, self.view, self.store, self.catalog, self.counters, busy_share=1.0
        )
        self.stopping = threading.Event()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":"))
        with self.out_lock:
            self.out.write(line + "\n")
            self.out.flush()

    def report(self) -> None:
        while not self.stopping.wait(0.1):
            self.send(self.stats())

    def stats(self) -> dict[str, Any]:
        cars = {
            car: {
                "frames_sealed": c.frames_sealed,
                "duplicates": c.duplicates,
                "missing": c.missing,
                "gaps": c.gaps,
            }
            for car, c in list(self.counters.cars.items())
        }
        malformed = [
            [car, kind, reason, n] for (car, kind, reason), n in list(self.counters.malformed.items())
        ]
        return {
            "t": "stats",
            "cars": cars,
            "shards_sealed": self.counters.shards_sealed,
            "shard_bytes": self.counters.shard_bytes,
            "lag_bytes": self.sealer.lag_bytes,
            "store_errors": self.sealer.store_errors,
            "last_error": self.sealer.last_error,
            "malformed": malformed,
        }

    def handle(self, req: dict[str, Any]) -> Any:
        op = req["op"]
        if op == "flush":
            done = self.sealer.flush(req["timeout"], target=(req["target"][0], req["target"][1]))
            self.send(self.stats())  # the hub's counters are current when flush returns
            return done
        if op == "sync":
            self.send(self.stats())
            return None
        if op == "trim":
            manifest = self.sealer.trim(req["car"], req["session"], req["start"], req["end"])
            self.send(self.stats())
            return manifest.to_dict()
        if op == "delete":
            self.sealer.delete(req["car"], req["session"], (req["position"][0], req["position"][1]))
            self.send(self.stats())
            return None
        if op == "stop":
            self.sealer.stop(seal=req["seal"], timeout=req["timeout"])
            self.send(self.stats())
            self.stopping.set()
            return None
        raise ValueError(f"unknown request {op!r}")

    def serve(self, inp: IO[str]) -> None:
        self.sealer.start()
        threading.Thread(target=self.report, name="sealproc-report", daemon=True).start()
        for line in inp:
            req = json.loads(line)
            try:
                result = self.handle(req)
                reply = {"t": "reply", "id": req["id"], "ok": True, "result": result}
            except (SessionNotFound, NoSuchKey) as exc:
                reply = {"t": "reply", "id": req["id"], "ok": False, "kind": "not_found", "error": str(exc)}
            except (StoreError, CatalogError) as exc:
                reply = {"t": "reply", "id": req["id"], "ok": False, "kind": "store", "error": str(exc)}
            except Exception as exc:
                log.exception("sealer request %s failed", req.get("op"))
                reply = {"t": "reply", "id": req["id"], "ok": False, "kind": "error", "error": str(exc)}
            self.send(reply)
            if self.stopping.is_set():
                self.catalog.close()
                return
        # stdin closed without "stop": the hub is gone. The spool keeps everything; leave now.
        os._exit(0)


def main() -> None:
    _die_with_parent()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    spec = json.loads(sys.stdin.readline())
    with contextlib.suppress(OSError):
        # Below ingest in the scheduler: on a busy machine acknowledging frames comes first; on an
        # idle one the niceness costs nothing.
        os.nice(int(spec["config"]["shards"].get("sealer_nice", 10)))
    logging.basicConfig(
        level=spec["config"].get("log_level", "info").upper(),
        format="%(asctime)s %(levelname)s sealer: %(message)s",
        stream=sys.stderr,
    )
    child = _Child(spec, out)
    child.send({"t": "ready"})
    child.serve(sys.stdin)


# --- parent side --------------------------------------------------------------------------------
class SealerProcess:
    """The hub's handle on the sealer process; the same calls as :class:`hub.storage.sealer.Sealer`."""

    def __init__(self, config: HubConfig, spool: WriteAheadSpool, counters: IngestCounters) -> None:
        self.config = config
        self.spool = spool
        self.counters = counters
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._stats: dict[str, Any] = {}
        self._base: dict[str, dict[str, int]] = {}
        self._base_totals = {"shards_sealed": 0, "shard_bytes": 0}
        self._malformed_seen: dict[tuple[str, str, str], int] = {}  # what the current child reported
        self._stopping = False
        self._ready = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._restarts = 0

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Start the supervisor thread, which starts the process (and a new one if it dies)."""
        self._ready.clear()
        self._supervisor = threading.Thread(target=self._supervise, name="hub-sealer-supervisor", daemon=True)
        self._supervisor.start()
        if not self._ready.wait(timeout):
            raise SealerProcessError(f"the sealer process did not start within {timeout}s")

    def _supervise(self) -> None:
        # The process is started from this thread, which lives as long as the hub: PR_SET_PDEATHSIG
        # fires when the *thread* that started a child ends, not only the process.
        while not self._stopping:
            try:
                proc = self._spawn()
            except Exception:
                log.exception("could not start the sealer process")
                time.sleep(1)
                continue
            reader = threading.Thread(target=self._read, args=(proc,), name="hub-sealer-link", daemon=True)
            reader.start()
            code = proc.wait()
            reader.join(5)
            if self._stopping:
                return
            self._restarts += 1
            log.error(
                "the sealer process exited with %s; starting a new one (the spool keeps everything)", code
            )
            self._rebase()
            time.sleep(min(0.2 * self._restarts, 5))

    def _spawn(self) -> "subprocess.Popen[str]":
        cfg = self.config
        store = cfg.store
        spec = {
            "config": json.loads(cfg.model_dump_json(exclude={"api": {"token"}, "sinks": True})),
            "store": {
                "url": cfg.store_url,
                "endpoint_url": store.endpoint_url,
                "region": store.region,
                "access_key_id": store.access_key_id,
                "secret_access_key": store.secret_access_key.get_secret_value()
                if store.secret_access_key
                else None,
                "create_bucket": store.create_bucket,
            },
            "first_segment": self.spool.first_segment,
        }
        proc = subprocess.Popen(
            # -P: the working directory is not put on sys.path, so a folder there named like a
            # package of ours (a data dir "hub/spool") cannot shadow the installed hub.
            [sys.executable, "-P", "-m", "hub.storage.sealproc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        self._proc = proc
        return proc

    def stop(self, seal: bool = True, timeout: float = 60.0) -> None:
        self._stopping = True
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            self._call({"op": "stop", "seal": seal, "timeout": timeout}, timeout + 5)
        except SealerProcessError as exc:
            log.warning("sealer process did not stop cleanly: %s", exc)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        with contextlib.suppress(OSError):
            if proc.stdin:
                proc.stdin.close()
        if self._supervisor is not None:
            self._supervisor.join(10)

    def _read(self, proc: "subprocess.Popen[str]") -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                log.warning("sealer process said: %s", line.rstrip())
                continue
            kind = msg.get("t")
            if kind == "stats":
                self._apply(msg)
            elif kind == "reply":
                with self._lock:
                    waiter = self._waiting.pop(msg["id"], None)
                if waiter is not None:
                    waiter[1].append(msg)
                    waiter[0].set()
            elif kind == "ready":
                self._ready.set()
        code = proc.wait()
        with self._lock:
            for event, box in self._waiting.values():
                box.append({"ok": False, "kind": "gone", "error": f"the sealer process exited ({code})"})
                event.set()
            self._waiting.clear()

    def _apply(self, stats: dict[str, Any]) -> None:
        self._stats = stats
        for car, values in stats["cars"].items():
            c = self.counters.car(car)
            base = self._base.get(car, {})
            c.frames_sealed = base.get("frames_sealed", 0) + values["frames_sealed"]
            c.duplicates = base.get("duplicates", 0) + values["duplicates"]
            c.missing = values["missing"]
            c.gaps = values["gaps"]
        self.counters.shards_sealed = self._base_totals["shards_sealed"] + stats["shards_sealed"]
        self.counters.shard_bytes = self._base_totals["shard_bytes"] + stats["shard_bytes"]
        self._apply_malformed(stats.get("malformed", []))

    def _apply_malformed(self, rows: list[list[Any]]) -> None:
        """Add what the child quarantined since its last report to the hub's malformed counters."""
        for car, kind, reason, n in rows:
            key = (str(car), str(kind), str(reason))
            new = int(n) - self._malformed_seen.get(key, 0)
            if new > 0:
                self.counters.add_malformed(key[0] or None, key[1], key[2], new)
                self._malformed_seen[key] = int(n)

    def _rebase(self) -> None:
        """A new child counts from zero: keep what the old one counted."""
        self._malformed_seen = {}
        self._base = {  # the cars still counted (the counters are bounded)
            car: {"frames_sealed": c.frames_sealed, "duplicates": c.duplicates}
            for car, c in list(self.counters.cars.items())
        }
        self._base_totals = {
            "shards_sealed": self.counters.shards_sealed,
            "shard_bytes": self.counters.shard_bytes,
        }

    def _call(self, req: dict[str, Any], timeout: float) -> Any:
        proc = self._proc
        if proc is None or proc.poll() is not None or proc.stdin is None:
            raise SealerProcessError("the sealer process is not running")
        req_id = next(self._ids)
        event = threading.Event()
        box: list[dict[str, Any]] = []
        with self._lock:
            self._waiting[req_id] = (event, box)
            try:
                proc.stdin.write(json.dumps({"id": req_id, **req}) + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                self._waiting.pop(req_id, None)
                raise SealerProcessError(f"the sealer process is gone: {exc}") from None
        if not event.wait(timeout):
            with self._lock:
                self._waiting.pop(req_id, None)
            raise SealerProcessError(f"the sealer process did not answer {req['op']} within {timeout}s")
        reply = box[0]
        if reply["ok"]:
            return reply.get("result")
        if reply.get("kind") == "not_found":
            raise SessionNotFound(reply["error"])
        if reply.get("kind") == "store":
            raise StoreError(reply["error"])
        raise SealerProcessError(reply["error"])

    # --- what the hub calls -------------------------------------------------------------------
    def flush(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.spool.pending and time.monotonic() < deadline:
            time.sleep(0.005)
        left = max(deadline - time.monotonic(), 0.1)
        try:
            return bool(
                self._call({"op": "flush", "timeout": left, "target": list(self.spool.durable)}, left + 5)
            )
        except SealerProcessError:
            return False

    def sync(self, timeout: float = 10.0) -> None:
        """Bring the hub's counters up to date with the sealer's now (not at the next report)."""
        with contextlib.suppress(SealerProcessError):
            self._call({"op": "sync"}, timeout)

    def trim(self, car: str, session: str, start: int, end: int) -> SessionManifest:
        result = self._call({"op": "trim", "car": car, "session": session, "start": start, "end": end}, 300)
        return SessionManifest.from_dict(result)

    def delete(self, car: str, session: str) -> None:
        self._call(
            {"op": "delete", "car": car, "session": session, "position": list(self.spool.durable)}, 300
        )

    @property
    def lag_bytes(self) -> int:
        return int(self._stats.get("lag_bytes", 0))

    @property
    def store_errors(self) -> int:
        return int(self._stats.get("store_errors", 0))

    @property
    def last_error(self) -> str | None:
        value = self._stats.get("last_error")
        return None if value is None else str(value)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def restarts(self) -> int:
        """How often the process died and was started again."""
        return self._restarts

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


def make_sealer(
    config: HubConfig,
    spool: WriteAheadSpool,
    store: ObjectStore,
    catalog: Catalog,
    counters: IngestCounters,
) -> SealerHandle:
    """The sealer ``shards.sealer`` asks for: a process of its own, or a thread of the hub."""
    if config.shards.sealer == "process":
        return SealerProcess(config, spool, counters)
    return Sealer.from_config(config.shards, spool, store, catalog, counters)


if __name__ == "__main__":
    main()
