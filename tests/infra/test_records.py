"""The one spool record format: the car's forward spool and the hub's write-ahead spool write the
same bytes for the same body, and infra.records reads both."""

from pathlib import Path

from edge.spool import FIRST, ForwardSpool
from hub.storage.spool import WriteAheadSpool, list_segments, segment_path
from infra import records


def test_both_spools_write_the_shared_record_format(tmp_path: Path) -> None:
    bodies = [b"frame-%d" % i * (i + 1) for i in range(20)]
    car = ForwardSpool(tmp_path / "car", max_bytes=1 << 20)
    for body in bodies:
        car.append(body)
    car.close()
    hub = WriteAheadSpool(tmp_path / "hub", fsync=False)
    hub.open()
    for body in bodies:
        hub.append(body, None)
    hub.close()
    car_bytes = next((tmp_path / "car").glob("*.seg")).read_bytes()[FIRST:]
    hub_bytes = segment_path(tmp_path / "hub", list_segments(tmp_path / "hub")[0]).read_bytes()
    assert car_bytes == hub_bytes == b"".join(records.encode(b) for b in bodies)
    assert [body for _, _, body in records.scan(hub_bytes)] == bodies


def test_scan_stops_at_a_torn_or_corrupt_record() -> None:
    data = bytearray(records.encode(b"a" * 10) + records.encode(b"b" * 10))
    assert len(list(records.scan(bytes(data) + b"R1\x05"))) == 2  # a header cut short
    data[records.size(10) + records.HEADER.size + 3] ^= 0xFF  # a bit flipped in the second body
    assert [body for _, _, body in records.scan(bytes(data))] == [b"a" * 10]
    assert records.parse_header(b"XX" + bytes(8)) is None
