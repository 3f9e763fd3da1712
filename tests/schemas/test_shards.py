import io
import tarfile

import pytest

from schemas.shards import ReadStats, Sample, ShardError, read_shard, write_shard


def _samples(n: int) -> list[Sample]:
    return [
        Sample(seq=i, jpeg=b"\xff\xd8" + bytes([i]) * 50, record={"seq": i, "steering": 0.1})
        for i in range(n)
    ]


def test_write_read_round_trip_is_deterministic() -> None:
    a, b = io.BytesIO(), io.BytesIO()
    assert write_shard(a, _samples(5)) == 5
    write_shard(b, _samples(5))
    assert a.getvalue() == b.getvalue()
    with tarfile.open(fileobj=io.BytesIO(a.getvalue())) as tar:
        names = tar.getnames()
    assert names[:2] == ["000000000.json", "000000000.jpg"]
    stats = ReadStats()
    assert list(read_shard(io.BytesIO(a.getvalue()), stats)) == _samples(5)
    assert (stats.samples, stats.skipped) == (5, 0)


def test_truncated_shard_yields_what_is_whole_and_counts_the_rest() -> None:
    buf = io.BytesIO()
    write_shard(buf, _samples(10))
    data = buf.getvalue()
    stats = ReadStats()
    got = list(read_shard(io.BytesIO(data[: len(data) // 2]), stats))
    assert 0 < len(got) < 10
    assert [s.seq for s in got] == list(range(len(got)))
    assert stats.skipped >= 1


def test_corrupt_members_are_skipped_with_a_count() -> None:
    buf = io.BytesIO()
    samples = _samples(3)
    samples[1] = Sample(seq=1, jpeg=b"not a jpeg", record={})
    write_shard(buf, samples)
    stats = ReadStats()
    assert [s.seq for s in read_shard(io.BytesIO(buf.getvalue()), stats)] == [0, 2]
    assert stats.skipped == 1
    assert "not a JPEG" in stats.reasons[0]


def test_garbage_is_a_shard_error() -> None:
    with pytest.raises(ShardError):
        list(read_shard(io.BytesIO(b"garbage" * 10)))
