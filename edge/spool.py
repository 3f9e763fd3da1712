"""An on-disk store-and-forward spool: a bounded FIFO of records that survives crashes and reboots.

Recorded frames are appended here first and leave only when the broker has acknowledged them, so a
broker outage, a lost connection or a reboot loses nothing: the backlog is sent again, in order.

Layout: segment files ``{n:012d}.seg`` (a 4-byte magic, then records in the format of
:mod:`infra.records`, the same as the hub's write-ahead spool) and a ``head`` file with the position
of the first unacknowledged record. Segments of the earlier format (magic ``PSP1``, records without
their own magic) are rewritten in the current one when the spool opens. A torn
record at the end of a segment (power cut mid-write) is cut off when the spool opens. Segments
before the head are deleted. The head is saved atomically, a little behind the acknowledgements,
so after a crash a few records may be sent twice (MQTT QoS 1 is at-least-once anyway; receivers
deduplicate by car, session and seq) — never fewer.

One thread appends; another (the sender) reads and acknowledges. Both may be different threads.
"""

import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from infra import records
from infra.files import fsync_dir, write_atomic

log = logging.getLogger(__name__)

MAGIC = b"PSP2"
FIRST = len(MAGIC)
# The format before infra.records (``uint32 length · uint32 crc32 · bytes``), only read to upgrade.
_LEGACY_MAGIC = b"PSP1"
_LEGACY_REC = struct.Struct("<II")
HEAD_SAVE_INTERVAL_S = 0.2


class SpoolFull(Exception):
    """Appending would exceed the spool's size limit."""


class SpoolCorrupt(Exception):
    """A record failed its checksum."""


class Position(NamedTuple):
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    position: Position
    next: Position
    data: bytes


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    size: int  # bytes of valid data (committed)
    sealed: bool


class ForwardSpool:
    """The car's store-and-forward spool: records wait here until the broker has them."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int = 4 * 1024 * 1024,
        fsync_interval_s: float = 1.0,
    ) -> None:
        if max_bytes < 1024:
            raise ValueError("spool max_bytes must be at least 1 KiB")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(1024, min(segment_bytes, max_bytes))
        self.fsync_interval_s = fsync_interval_s
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._tail_fd: int | None = None
        self._read_fds: dict[int, int] = {}
        self._head = Position(0, FIRST)
        self._head_saved_at = 0.0
        self._head_dirty = False
        self._last_sync = time.monotonic()
        self._unsynced = False
        self.pending_records = 0
        self.appended = 0
        self.acked = 0
        self.truncated_bytes = 0
        self.on_append: Callable[[], None] | None = None
        self._closed = False
        self._open()

    # --- opening and recovery -----------------------------------------------------------------
    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        numbers = sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())
        for n in numbers:
            _upgrade_legacy(self._path(n))
        head = self._load_head(numbers)
        for n in numbers:
            path = self._path(n)
            if n < head.segment:
                path.unlink(missing_ok=True)
                continue
            size, count = self._scan(path, start=head.offset if n == head.segment else FIRST)
            if n == head.segment and head.offset > size:
                # Acknowledged records were lost in a power cut before they reached the disk.
                head = Position(n, size)
            self._segments[n] = _Segment(n, path, size, sealed=True)
            self.pending_records += count
        self._head = head
        if self._segments:
            last = self._segments[max(self._segments)]
            last.sealed = False
            self._tail_fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
        else:
            self._new_segment(head.segment)
        if self.pending_records:
            log.info("spool %s: %d records waiting from before", self.directory, self.pending_records)

    def _path(self, n: int) -> Path:
        return self.directory / f"{n:012d}.seg"

    def _load_head(self, numbers: list[int]) -> Position:
        head_file = self.directory / "head"
        try:
            seg, off = (int(x) for x in head_file.read_text().split())
            head = Position(seg, max(FIRST, off))
        except (FileNotFoundError, ValueError):
            head = Position(numbers[0] if numbers else 0, FIRST)
        if numbers and head.segment not in numbers:
            # The head's segment is gone (fully acknowledged): start at the next existing one.
            later = [n for n in numbers if n > head.segment]
            head = Position(later[0], FIRST) if later else Position(head.segment, FIRST)
        return head

    def _scan(self, path: Path, start: int) -> tuple[int, int]:
        """Validate a segment: return (valid size, records from ``start``); cut a torn tail."""
        count = 0
        with path.open("r+b") as fh:
            data = fh.read()
            if data[: len(MAGIC)] != MAGIC:
                log.error("spool segment %s has no valid magic; discarding it", path)
                fh.truncate(0)
                fh.write(MAGIC)
                self.truncated_bytes += len(data)
                return FIRST, 0
            off = FIRST
            for at, end, _body in records.scan(data, FIRST):
                if at >= start:
                    count += 1
                off = end
            if off != len(data):
                log.warning("spool segment %s: cutting %d bytes of a torn record", path, len(data) - off)
                self.truncated_bytes += len(data) - off
                fh.truncate(off)
        return off, count

    def _new_segment(self, n: int) -> None:
        path = self._path(n)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        os.write(fd, MAGIC)
        self._tail_fd = fd
        self._segments[n] = _Segment(n, path, FIRST, sealed=False)
        fsync_dir(self.directory)

    # --- writer -------------------------------------------------------------------------------
    @property
    def disk_bytes(self) -> int:
        return sum(s.size for s in self._segments.values())

    def append(self, data: bytes) -> Position:
        """Append one record; raise :class:`SpoolFull` when it does not fit."""
        need = records.size(len(data))
        with self._lock:
            if self._closed:
                raise RuntimeError("spool is closed")
            if self.disk_bytes + need > self.max_bytes:
                raise SpoolFull(
                    f"spool {self.directory} is full ({self.disk_bytes} of {self.max_bytes} bytes, "
                    f"{self.pending_records} records waiting)"
                )
            tail = self._segments[max(self._segments)]
            if tail.size > FIRST and tail.size + need > self.segment_bytes:
                self._seal(tail)
                self._new_segment(tail.number + 1)
                tail = self._segments[tail.number + 1]
            assert self._tail_fd is not None
            pos = Position(tail.number, tail.size)
            os.write(self._tail_fd, records.encode(data))
            tail.size += need
            self.pending_records += 1
            self.appended += 1
            self._unsynced = True
            self._maybe_sync_locked()
        callback = self.on_append
        if callback is not None:
            callback()
        return pos

    def _seal(self, seg: _Segment) -> None:
        assert self._tail_fd is not None
        os.fsync(self._tail_fd)
        os.close(self._tail_fd)
        self._tail_fd = None
        seg.sealed = True

    def _maybe_sync_locked(self) -> None:
        now = time.monotonic()
        if self._unsynced and self._tail_fd is not None and now - self._last_sync >= self.fsync_interval_s:
            os.fsync(self._tail_fd)
            self._unsynced = False
            self._last_sync = now

    def maybe_sync(self) -> None:
        """fsync if the interval has passed (the writer calls this when idle)."""
        with self._lock:
            if not self._closed:
                self._maybe_sync_locked()

    def flush(self) -> None:
        """fsync the tail and save the head now."""
        with self._lock:
            if self._tail_fd is not None and self._unsynced:
                os.fsync(self._tail_fd)
                self._unsynced = False
                self._last_sync = time.monotonic()
            self._save_head_locked(force=True)

    # --- reader -------------------------------------------------------------------------------
    @property
    def head(self) -> Position:
        return self._head

    @property
    def tail(self) -> Position:
        """The position just after the last appended record."""
        with self._lock:
            seg = self._segments[max(self._segments)]
            return Position(seg.number, seg.size)

    def read(
        self, position: Position, max_records: int = 64, max_bytes: int = 8 * 1024 * 1024
    ) -> list[SpoolRecord]:
        """Records from ``position`` on, in order (at most ``max_records`` / about ``max_bytes``)."""
        out: list[SpoolRecord] = []
        total = 0
        pos = position
        while len(out) < max_records and total < max_bytes:
            with self._lock:
                seg = self._segments.get(pos.segment)
                if seg is None:
                    later = [n for n in self._segments if n > pos.segment]
                    if not later:
                        break
                    pos = Position(min(later), FIRST)
                    continue
                size, sealed = seg.size, seg.sealed
                fd = self._read_fd(seg)
            if pos.offset >= size:
                if sealed:
                    pos = Position(pos.segment + 1, FIRST)
                    continue
                break
            head = records.parse_header(os.pread(fd, records.HEADER.size, pos.offset))
            if head is None:
                raise SpoolCorrupt(f"spool record at {pos} has no valid header")
            data = os.pread(fd, head.length, pos.offset + records.HEADER.size)
            nxt = Position(pos.segment, pos.offset + records.size(head.length))
            if not records.intact(data, head):
                raise SpoolCorrupt(f"spool record at {pos} fails its checksum")
            length = head.length
            out.append(SpoolRecord(pos, nxt, data))
            total += length
            pos = nxt
        return out

    def _read_fd(self, seg: _Segment) -> int:
        fd = self._read_fds.get(seg.number)
        if fd is None:
            fd = os.open(seg.path, os.O_RDONLY)
            self._read_fds[seg.number] = fd
        return fd

    def ack(self, record: SpoolRecord) -> None:
        """``record`` (the oldest unacknowledged one) has been delivered."""
        with self._lock:
            if record.position != self._head and not (
                record.position.offset == FIRST and record.position.segment > self._head.segment
            ):
                raise ValueError(f"acknowledgement out of order: {record.position}, head is {self._head}")
            self._head = record.next
            self.pending_records -= 1
            self.acked += 1
            self._head_dirty = True
            for n in [n for n in self._segments if n < self._head.segment]:
                self._drop_segment(n)
            seg = self._segments.get(self._head.segment)
            if seg is not None and seg.sealed and self._head.offset >= seg.size:
                # Sealing always opens the next segment, so the head moves there.
                self._head = Position(seg.number + 1, FIRST)
                self._drop_segment(seg.number)
            self._save_head_locked(force=False)

    def _drop_segment(self, n: int) -> None:
        seg = self._segments.pop(n)
        fd = self._read_fds.pop(n, None)
        if fd is not None:
            os.close(fd)
        seg.path.unlink(missing_ok=True)
        self._save_head_locked(force=True)

    def _save_head_locked(self, force: bool) -> None:
        now = time.monotonic()
        if not (self._head_dirty or force) or (
            not force and now - self._head_saved_at < HEAD_SAVE_INTERVAL_S
        ):
            return
        # Not fsynced: a head that lags after a power cut only resends a few records.
        head = f"{self._head.segment} {self._head.offset}\n".encode()
        write_atomic(self.directory / "head", head, durable=False)
        self._head_saved_at = now
        self._head_dirty = False

    # --- closing ------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._tail_fd is not None:
                if self._unsynced:
                    os.fsync(self._tail_fd)
                os.close(self._tail_fd)
                self._tail_fd = None
            self._save_head_locked(force=True)
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
            self._closed = True


def _upgrade_legacy(path: Path) -> None:
    """Rewrite a ``PSP1`` segment in the current format (atomically); others stay as they are.

    Offsets move by two bytes per record (the record magic), so the head file is rewritten as well
    when it points into this segment.
    """
    with path.open("rb") as fh:
        if fh.read(len(_LEGACY_MAGIC)) != _LEGACY_MAGIC:
            return
        data = _LEGACY_MAGIC + fh.read()
    out = [MAGIC]
    shift: dict[int, int] = {FIRST: FIRST}
    off, new_off = FIRST, FIRST
    while off + _LEGACY_REC.size <= len(data):
        length, crc = _LEGACY_REC.unpack_from(data, off)
        end = off + _LEGACY_REC.size + length
        body = data[off + _LEGACY_REC.size : end]
        if end > len(data) or zlib.crc32(body) != crc:
            break  # a torn tail: never acknowledged, and _scan would cut it anyway
        out.append(records.encode(body))
        off, new_off = end, new_off + records.size(length)
        shift[off] = new_off
    upgraded = b"".join(out)
    head_file = path.parent / "head"
    try:
        segment, offset = (int(x) for x in head_file.read_text().split())
    except (FileNotFoundError, ValueError):
        segment, offset = -1, 0
    write_atomic(path, upgraded)
    if segment == int(path.stem) and offset in shift:
        write_atomic(head_file, f"{segment} {shift[offset]}\n".encode())
    log.info("spool segment %s upgraded to the current record format", path)
