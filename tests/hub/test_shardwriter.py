"""The hub's fast shard writer writes exactly what schemas.shards.write_shard writes."""

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.storage.shards import shard_bytes
from schemas.shards import ReadStats, Sample, read_shard, write_shard

records = st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.one_of(
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
        st.booleans(),
        st.none(),
    ),
    max_size=6,
)
samples = st.lists(
    st.builds(
        Sample,
        seq=st.integers(0, 10**9 - 1),
        jpeg=st.binary(min_size=0, max_size=3000).map(lambda b: b"\xff\xd8" + b),
        record=records,
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(samples)
def test_identical_to_write_shard(items: list[Sample]) -> None:
    reference = io.BytesIO()
    write_shard(reference, items)
    assert shard_bytes(items) == reference.getvalue()


def test_read_back_by_the_trainers_reader() -> None:
    items = [
        Sample(i, b"\xff\xd8" + bytes([i]) * (i * 97 % 1500), {"seq": i, "steering": i / 10})
        for i in range(50)
    ]
    stats = ReadStats()
    assert list(read_shard(io.BytesIO(shard_bytes(items)), stats)) == items
    assert stats.skipped == 0
