"""The write-ahead spool: group commit, ordered callbacks, torn tails, segment release."""

import os
import threading
from pathlib import Path
from typing import Any

from hub.storage.spool import SpoolReader, WriteAheadSpool, list_segments, segment_path
from infra.records import HEADER


def _collect(spool: WriteAheadSpool) -> list[Any]:
    got: list[Any] = []
    lock = threading.Lock()

    def on_durable(tokens: list[Any]) -> None:
        with lock:
            got.extend(tokens)

    spool.on_durable = on_durable
    return got


def test_records_are_durable_in_order_and_read_back(tmp_path: Path) -> None:
    spool = WriteAheadSpool(tmp_path, max_batch=7)
    got = _collect(spool)
    spool.open()
    bodies = [os.urandom(100 + i) for i in range(50)]
    for i, body in enumerate(bodies):
        spool.append(body, i)
        if i % 10 == 0:
            spool.append(None, f"ack-{i}")  # nothing written, reported in order
    spool.close()
    expected = []
    for i in range(50):
        expected.append(i)
        if i % 10 == 0:
            expected.append(f"ack-{i}")
    assert got == expected
    assert spool.stats.appended == 50
    assert spool.stats.batches >= 50 // 7
    # A new spool (a restarted hub) reads everything back from the old segment.
    again = WriteAheadSpool(tmp_path)
    again.open()
    reader = SpoolReader(again)
    assert [body for _, body in reader.read(1000)] == bodies
    assert again.segment == 1
    again.close()


def test_reader_follows_the_writer_and_segments_rotate(tmp_path: Path) -> None:
    spool = WriteAheadSpool(tmp_path, segment_bytes=1000)
    spool.open()
    reader = SpoolReader(spool)
    seen: list[bytes] = []
    for i in range(40):
        spool.append(bytes([i]) * 90, i)
        if i % 5 == 4:
            spool.wait_durable((0, 0), 1.0)
            import time

            deadline = time.monotonic() + 2
            while len(seen) < i + 1 and time.monotonic() < deadline:
                seen.extend(b for _, b in reader.read(1000))
    spool.close()
    seen.extend(b for _, b in reader.read(1000))
    assert seen == [bytes([i]) * 90 for i in range(40)]
    assert len(list_segments(tmp_path)) > 3
    removed = spool.release_before(reader.position[0])
    assert removed and min(list_segments(tmp_path)) == reader.position[0]


def test_a_torn_tail_is_skipped_and_later_segments_still_read(tmp_path: Path) -> None:
    spool = WriteAheadSpool(tmp_path)
    spool.open()
    for i in range(3):
        spool.append(b"frame-%d" % i, i)
    spool.close()
    # A killed writer left half a record, then garbage.
    with segment_path(tmp_path, 0).open("ab") as fh:
        fh.write(HEADER.pack(b"R1", 1000, 0) + b"half")
    spool2 = WriteAheadSpool(tmp_path)
    spool2.open()
    spool2.append(b"after-restart", "x")
    spool2.close()
    spool3 = WriteAheadSpool(tmp_path)
    spool3.open()
    reader = SpoolReader(spool3)
    assert [b for _, b in reader.read(100)] == [b"frame-0", b"frame-1", b"frame-2", b"after-restart"]
    assert spool3.stats.torn_bytes == HEADER.size + 4
    spool3.close()


def test_a_corrupt_record_is_detected_by_its_crc(tmp_path: Path) -> None:
    spool = WriteAheadSpool(tmp_path)
    spool.open()
    spool.append(b"a" * 50, 0)
    spool.append(b"b" * 50, 1)
    spool.close()
    path = segment_path(tmp_path, 0)
    data = bytearray(path.read_bytes())
    data[HEADER.size + 50 + HEADER.size + 10] ^= 0xFF  # flip a bit in the second body
    path.write_bytes(bytes(data))
    spool2 = WriteAheadSpool(tmp_path)
    spool2.open()
    reader = SpoolReader(spool2)
    assert [b for _, b in reader.read(10)] == [b"a" * 50]
    spool2.close()


def test_large_records_are_read_whole(tmp_path: Path) -> None:
    spool = WriteAheadSpool(tmp_path)
    spool.open()
    big = os.urandom(3 * 1024 * 1024)
    spool.append(big, 0)
    spool.append(b"small", 1)
    spool.close()
    spool2 = WriteAheadSpool(tmp_path)
    spool2.open()
    reader = SpoolReader(spool2, chunk_bytes=1024 * 1024)
    assert [b for _, b in reader.read(10)] == [big, b"small"]
    spool2.close()


def test_append_blocks_while_too_much_is_pending(tmp_path: Path) -> None:
    spool = WriteAheadSpool(tmp_path, max_pending_bytes=1000)
    release = threading.Event()
    durable: list[Any] = []

    def slow(tokens: list[Any]) -> None:
        release.wait(5)
        durable.extend(tokens)

    spool.on_durable = slow
    spool.open()
    spool.append(b"x" * 600, 0)  # taken by the writer, which then waits in the callback
    import time

    time.sleep(0.1)
    spool.append(b"x" * 600, 1)  # pending
    blocked = threading.Thread(target=spool.append, args=(b"x" * 600, 2))
    blocked.start()
    time.sleep(0.2)
    assert blocked.is_alive()  # back-pressure: waits for the disk
    release.set()
    blocked.join(5)
    assert not blocked.is_alive()
    spool.close()
    assert durable == [0, 1, 2]
