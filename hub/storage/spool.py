"""The write-ahead spool: every recorded frame is on the hub's disk before the broker hears an ack.

Frames are appended to numbered segment files by one writer thread that commits in groups: it takes
everything that arrived while the previous fsync ran, writes it with one ``write``, fsyncs once and
only then reports the batch durable (the caller acknowledges those messages to the broker). A hub
killed at any instant has either a frame on disk or an unacknowledged message the broker resends.

Records are in the format of :mod:`infra.records` (the car's forward spool uses the same); a body
is the frame envelope as received, or a control record (``b"CTL1"`` + JSON, e.g. "close this
session") that must take effect exactly after the frames before it. A torn tail (the last write of
a killed process) fails its magic, length or crc check and is skipped: it was never acknowledged.

A reader (the sealer) follows the spool up to the durable position and releases segments once
everything in them is sealed into shards.
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from infra import records
from infra.files import fsync_dir

log = logging.getLogger(__name__)

CONTROL = b"CTL1"
_SUFFIX = ".wal"

# (segment, offset): totally ordered positions in the spool.
Position = tuple[int, int]


@dataclass(slots=True)
class SpoolStats:
    appended: int = 0
    batches: int = 0
    bytes_written: int = 0
    fsync_seconds: float = 0.0
    last_batch: int = 0
    torn_bytes: int = 0
    write_errors: int = 0  # failed writes retried (disk full, I/O errors)


def segment_path(directory: Path, index: int) -> Path:
    return directory / f"{index:012d}{_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    out = []
    for p in directory.glob(f"*{_SUFFIX}"):
        stem = p.name[: -len(_SUFFIX)]
        if stem.isdigit():
            out.append(int(stem))
    return sorted(out)


class WriteAheadSpool:
    """The hub's write-ahead spool: append-only segments with group-committed fsync, written by one
    thread (named apart from the car's :class:`edge.spool.ForwardSpool`, which waits for the broker
    where this one waits for the disk)."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        segment_bytes: int = 64 * 1024 * 1024,
        max_batch: int = 2000,
        max_pending_bytes: int = 256 * 1024 * 1024,
        commit_interval_s: float = 0.0,
        on_durable: Callable[[list[Any]], None] | None = None,
    ) -> None:
        self.directory = directory
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.max_batch = max_batch
        self.max_pending_bytes = max_pending_bytes
        self.on_durable = on_durable
        self.commit_interval_s = commit_interval_s
        self._last_commit = 0.0
        self.stats = SpoolStats()
        self._cond = threading.Condition()  # durable position, back-pressure
        self._lock = threading.Lock()  # the pending list (cheap: taken once per frame)
        self._wake = threading.Event()
        self._writer_idle = False
        self.last_append = 0.0
        self._pending: list[tuple[bytes | None, Any]] = []
        self._pending_bytes = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._fd = -1
        self._segment = 0
        self._offset = 0
        self._durable: Position = (0, 0)
        self._error: BaseException | None = None
        self.first_segment = 0
        self.live_tail = False  # readers see only what this writer made durable

    # --- lifecycle --------------------------------------------------------------------------------
    def open(self) -> None:
        """Start a fresh segment after the existing ones and the writer thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = list_segments(self.directory)
        self._segment = (existing[-1] + 1) if existing else 0
        self.first_segment = self._segment  # segments from here on are this process's own
        self._open_segment()
        self._durable = (self._segment, 0)
        self._thread = threading.Thread(target=self._run, name="hub-spool-writer", daemon=True)
        self._thread.start()

    def _open_segment(self) -> None:
        path = segment_path(self.directory, self._segment)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._offset = os.fstat(self._fd).st_size
        fsync_dir(self.directory)

    def close(self, timeout: float = 30.0) -> None:
        """Write and acknowledge what is pending, then stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # --- writing ----------------------------------------------------------------------------------
    def append(self, body: bytes | None, token: Any) -> bool:
        """Queue ``body`` (None: nothing to write, just report ``token`` in order with the others).

        Blocks while more than ``max_pending_bytes`` wait for the disk (back-pressure onto the broker).
        Returns False if the spool is closing and the item was not taken.
        """
        size = len(body) if body is not None else 0
        if self._pending_bytes + size > self.max_pending_bytes:
            with self._cond:
                while (
                    self._pending_bytes + size > self.max_pending_bytes
                    and self._pending
                    and not self._closing
                ):
                    self._cond.wait(0.5)
        if self._closing:
            return False
        with self._lock:
            self._pending.append((body, token))
            self._pending_bytes += size
            if self._writer_idle:
                self._writer_idle = False
                self._wake.set()
        self.last_append = time.monotonic()
        return True

    @property
    def durable(self) -> Position:
        return self._durable

    @property
    def segment(self) -> int:
        return self._segment

    def busy(self, window: float = 0.1) -> bool:
        """Frames arrived within the last ``window`` seconds."""
        return time.monotonic() - self.last_append < window

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def error(self) -> BaseException | None:
        return self._error

    def wait_durable(self, after: Position, timeout: float) -> Position:
        """Wait until the durable position moves past ``after`` (or ``timeout``); return it."""
        with self._cond:
            if self._durable <= after:
                self._cond.wait(timeout)
            return self._durable

    def _run(self) -> None:
        while True:
            if self.commit_interval_s and not self._closing:
                # Gather a little longer between fsyncs: fewer, larger batches cost less CPU.
                left = self._last_commit + self.commit_interval_s - time.monotonic()
                if left > 0 and len(self._pending) < self.max_batch:
                    time.sleep(left)
            with self._lock:
                if not self._pending:
                    if self._closing:
                        return
                    self._writer_idle = True
                    self._wake.clear()
                    batch = None
                else:
                    batch = self._pending[: self.max_batch]
                    del self._pending[: self.max_batch]
            if batch is None:
                self._wake.wait(0.5)
                continue
            if not self._commit_until_written(batch):
                return
            tokens = [token for _, token in batch]
            written = sum(len(b) for b, _ in batch if b is not None)
            with self._lock:
                self._pending_bytes -= written
            with self._cond:
                self._durable = (self._segment, self._offset)
                self._cond.notify_all()
            if self.on_durable is not None:
                try:
                    self.on_durable(tokens)
                except Exception:
                    log.exception("acknowledging a spool batch failed")
            if self._offset >= self.segment_bytes:
                self._rotate()

    def _commit_until_written(self, batch: list[tuple[bytes | None, Any]]) -> bool:
        """Write ``batch``; on a full disk or an I/O error keep it (unacknowledged: the broker and the
        pending list hold what comes meanwhile) and retry until the disk takes it again.
        False when the spool closes first, or on an error no retry can cure."""
        delay = 0.1
        while True:
            try:
                self._commit(batch)
                self._last_commit = time.monotonic()
            except OSError as exc:
                if self._error is None:
                    log.critical("spool write failed (%s): frames wait unacknowledged; retrying", exc)
                self._error = exc
                self.stats.write_errors += 1
                self._undo_partial_write()
                if self._closing:
                    return False
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(delay * 2, 2.0)
                continue
            except BaseException as exc:  # not the disk: a bug; stop acknowledging, say why
                log.critical("spool write failed, frames are no longer acknowledged: %s", exc)
                self._error = exc
                return False
            if self._error is not None:
                log.warning("spool writes resumed after: %s", self._error)
                self._error = None
            return True

    def _undo_partial_write(self) -> None:
        """Cut a torn batch off the segment, so the retry appends whole records only."""
        try:
            os.ftruncate(self._fd, self._offset)
        except OSError as exc:
            log.error("cannot truncate spool segment %d to %d: %s", self._segment, self._offset, exc)

    def _commit(self, batch: list[tuple[bytes | None, Any]]) -> None:
        chunks: list[bytes] = []
        for body, _ in batch:
            if body is not None:
                chunks.append(records.header(body))
                chunks.append(body)
        if not chunks:
            return
        data = b"".join(chunks)  # one copy, one write
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        t0 = time.perf_counter()
        if self.fsync:
            os.fdatasync(self._fd)
        st = self.stats
        st.fsync_seconds += time.perf_counter() - t0
        st.appended += len(chunks) // 2
        st.batches += 1
        st.bytes_written += len(data)
        st.last_batch = len(chunks) // 2
        self._offset += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        with self._cond:
            self._segment += 1
            self._open_segment()
            self._durable = (self._segment, 0)
            self._cond.notify_all()

    # --- housekeeping -----------------------------------------------------------------------------
    def release_before(self, segment: int) -> list[int]:
        """Delete segments older than ``segment`` (never the one being written)."""
        return release_segments(self.directory, min(segment, self._segment))

    def size_bytes(self) -> int:
        return segments_size(self.directory)


def release_segments(directory: Path, limit: int) -> list[int]:
    """Delete the segments numbered below ``limit``; return their numbers."""
    removed = []
    for index in list_segments(directory):
        if index >= limit:
            break
        segment_path(directory, index).unlink(missing_ok=True)
        removed.append(index)
    return removed


def segments_size(directory: Path) -> int:
    """Bytes in the spool's segments (one may vanish while we look: it was just released)."""
    total = 0
    for index in list_segments(directory):
        try:
            total += segment_path(directory, index).stat().st_size
        except FileNotFoundError:
            pass
    return total


class SpoolLike(Protocol):
    """What a reader needs of a spool: the writer's own (``WriteAheadSpool``) or a view of one that another
    process writes (``hub.storage.sealproc.SpoolView``)."""

    directory: Path
    first_segment: int
    stats: SpoolStats
    live_tail: bool

    @property
    def durable(self) -> Position: ...
    @property
    def pending(self) -> int: ...
    def busy(self, window: float = 0.1) -> bool: ...
    def wait_durable(self, after: Position, timeout: float) -> Position: ...
    def release_before(self, segment: int) -> list[int]: ...
    def size_bytes(self) -> int: ...


class SpoolReader:
    """Reads records from the oldest segment up to the spool's durable position."""

    def __init__(self, spool: "WriteAheadSpool | SpoolLike", chunk_bytes: int = 8 * 1024 * 1024) -> None:
        self.spool = spool
        self.chunk_bytes = chunk_bytes
        segments = list_segments(spool.directory)
        self.position: Position = (segments[0], 0) if segments else spool.durable
        self._fd = -1
        self._fd_segment = -1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open(self, segment: int) -> bool:
        if self._fd_segment == segment and self._fd >= 0:
            return True
        self.close()
        try:
            self._fd = os.open(segment_path(self.spool.directory, segment), os.O_RDONLY)
        except FileNotFoundError:
            return False
        self._fd_segment = segment
        return True

    def _next_segment(self, after: int) -> int | None:
        later = [s for s in list_segments(self.spool.directory) if s > after]
        return later[0] if later else None

    def read(self, max_records: int = 10_000) -> Iterator[tuple[Position, bytes]]:
        """Yield ``(position after the record, body)`` for durable records not read yet."""
        produced = 0
        while produced < max_records:
            segment, offset = self.position
            durable_segment, durable_offset = self.spool.durable
            if segment > durable_segment:
                return
            if not self._open(segment):
                nxt = self._next_segment(segment)
                if nxt is None or nxt > durable_segment:
                    return
                self.position = (nxt, 0)
                continue
            # A finished segment is read to its end; the one being written up to the durable offset.
            end = os.fstat(self._fd).st_size if segment < durable_segment else durable_offset
            if offset >= end:
                if segment == durable_segment:
                    return
                nxt = self._next_segment(segment)
                if nxt is None:
                    return
                self.position = (nxt, 0)
                continue
            if end - offset < records.HEADER.size:
                if self.spool.live_tail and segment == durable_segment:
                    return
                self._torn(segment, offset, end)
                continue
            data = os.pread(self._fd, min(end - offset, self.chunk_bytes), offset)
            pos = 0
            while produced < max_records and pos + records.HEADER.size <= len(data):
                head = records.parse_header(data, pos)
                record_end = pos + records.size(head.length) if head is not None else len(data)
                if self.spool.live_tail and segment == durable_segment and offset + record_end > end:
                    return  # another process is still writing this record: read it next time
                if head is None or offset + record_end > end:
                    self._torn(segment, offset + pos, end)
                    break
                if record_end > len(data):
                    if pos == 0:  # one record larger than a chunk: read exactly that record
                        data = os.pread(self._fd, records.size(head.length), offset)
                        continue
                    break  # the next chunk starts at this record
                body = data[pos + records.HEADER.size : record_end]
                # Records of an earlier process are checked (a torn tail); our own are durable as written.
                if segment < self.spool.first_segment and not records.intact(body, head):
                    self._torn(segment, offset + pos, end)
                    break
                pos = record_end
                produced += 1
                self.position = (segment, offset + pos)
                yield self.position, body

    def _torn(self, segment: int, at: int, end: int) -> None:
        lost = end - at
        self.spool.stats.torn_bytes += lost
        if segment < self.spool.durable[0]:
            log.warning(
                "spool segment %d: %d bytes after offset %d are a torn write (never acknowledged); skipped",
                segment,
                lost,
                at,
            )
            self.position = (segment, end)
        else:  # cannot happen for data this process made durable; stop rather than loop
            log.error("spool segment %d: corrupt record at offset %d", segment, at)
            self.position = (segment, end)
