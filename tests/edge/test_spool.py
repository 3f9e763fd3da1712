import os
from pathlib import Path

import pytest

from edge.spool import FIRST, ForwardSpool, Position, SpoolFull
from infra import records


def drain(spool: ForwardSpool, n: int | None = None) -> list[bytes]:
    out = []
    pos = spool.head
    while n is None or len(out) < n:
        batch = spool.read(pos, max_records=7)
        if not batch:
            break
        for rec in batch:
            spool.ack(rec)
            out.append(rec.data)
            pos = rec.next
            if n is not None and len(out) == n:
                break
    return out


def test_fifo_across_segments_with_acknowledgement(tmp_path: Path) -> None:
    spool = ForwardSpool(tmp_path, max_bytes=1 << 20, segment_bytes=2048, fsync_interval_s=0)
    items = [os.urandom(100 + i) for i in range(60)]
    for item in items:
        spool.append(item)
    assert spool.pending_records == 60
    assert len(list(tmp_path.glob("*.seg"))) > 3
    # reading does not remove anything; acknowledging does
    assert [r.data for r in spool.read(spool.head, max_records=5)] == items[:5]
    assert spool.pending_records == 60
    assert drain(spool) == items
    assert spool.pending_records == 0
    assert len(list(tmp_path.glob("*.seg"))) == 1  # fully acknowledged segments are deleted
    spool.close()


def test_backlog_survives_a_restart_in_order(tmp_path: Path) -> None:
    spool = ForwardSpool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    items = [f"frame-{i}".encode() * 20 for i in range(100)]
    for item in items:
        spool.append(item)
    assert drain(spool, 30) == items[:30]
    spool.close()
    again = ForwardSpool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    assert again.pending_records == 70
    again.append(b"after reboot")
    assert drain(again) == [*items[30:], b"after reboot"]
    again.close()


def test_a_torn_record_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    spool = ForwardSpool(tmp_path, max_bytes=1 << 20)
    for i in range(10):
        spool.append(bytes([i]) * 50)
    spool.close()
    seg = sorted(tmp_path.glob("*.seg"))[-1]
    with seg.open("ab") as fh:
        fh.write(b"\x90\x01\x00\x00garbage")  # a record header promising 400 bytes, then a power cut
    again = ForwardSpool(tmp_path, max_bytes=1 << 20)
    assert again.truncated_bytes == 11
    assert again.pending_records == 10
    again.append(b"next")
    assert drain(again) == [bytes([i]) * 50 for i in range(10)] + [b"next"]


def test_a_head_lost_with_its_records_does_not_hide_new_ones(tmp_path: Path) -> None:
    spool = ForwardSpool(tmp_path, max_bytes=1 << 20)
    for i in range(5):
        spool.append(bytes([i]) * 10)
    drain(spool)
    spool.close()
    seg = sorted(tmp_path.glob("*.seg"))[-1]
    seg.write_bytes(
        seg.read_bytes()[: FIRST + 2 * records.size(10)]
    )  # power cut: the last 3 records never hit the disk
    again = ForwardSpool(tmp_path, max_bytes=1 << 20)
    again.append(b"new")
    assert drain(again) == [b"new"]


def test_full_spool_refuses_and_frees_space_when_acknowledged(tmp_path: Path) -> None:
    spool = ForwardSpool(tmp_path, max_bytes=4096, segment_bytes=1024)
    n = 0
    while spool.disk_bytes + records.size(200) <= 4096:
        spool.append(b"x" * 200)
        n += 1
    with pytest.raises(SpoolFull, match="is full"):
        spool.append(b"x" * 200)
    assert 10 <= n <= 20
    drain(spool, 10)
    spool.append(b"x" * 200)  # space came back once whole segments were acknowledged


def test_acknowledgements_must_be_in_order(tmp_path: Path) -> None:
    spool = ForwardSpool(tmp_path, max_bytes=1 << 20)
    spool.append(b"a")
    spool.append(b"b")
    recs = spool.read(spool.head)
    with pytest.raises(ValueError, match="out of order"):
        spool.ack(recs[1])
    spool.ack(recs[0])
    assert spool.head == recs[0].next == Position(recs[1].position.segment, recs[1].position.offset)


def test_a_segment_of_the_earlier_format_is_upgraded_and_loses_nothing(tmp_path: Path) -> None:
    import struct
    import zlib

    bodies = [bytes([i]) * (5 + i) for i in range(6)]
    legacy = [struct.pack("<II", len(b), zlib.crc32(b)) + b for b in bodies]
    (tmp_path / f"{0:012d}.seg").write_bytes(b"PSP1" + b"".join(legacy) + b"\x07\x00")  # and a torn tail
    acked = 4 + len(legacy[0]) + len(legacy[1])  # the first two were delivered before the upgrade
    (tmp_path / "head").write_text(f"0 {acked}\n")
    spool = ForwardSpool(tmp_path, max_bytes=1 << 20)
    assert spool.pending_records == 4
    assert drain(spool) == bodies[2:]
    assert (tmp_path / f"{0:012d}.seg").read_bytes()[:4] == b"PSP2"
