"""SeqSet against a plain Python set, by hypothesis."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.storage.seqset import SeqSet

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 200), st.just(0)),
        st.tuples(st.just("add_range"), st.integers(0, 200), st.integers(0, 30)),
        st.tuples(st.just("remove_range"), st.integers(0, 200), st.integers(0, 30)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_seqset_matches_a_set(operations: list[tuple[str, int, int]]) -> None:
    s = SeqSet()
    ref: set[int] = set()
    for op, a, width in operations:
        if op == "add":
            assert s.add(a) == (a not in ref)
            ref.add(a)
        elif op == "add_range":
            new = set(range(a, a + width + 1)) - ref
            assert s.add_range(a, a + width) == len(new)
            ref |= new
        else:
            gone = set(range(a, a + width + 1)) & ref
            assert s.remove_range(a, a + width) == len(gone)
            ref -= gone
        assert len(s) == len(ref)
        assert list(s) == sorted(ref)
        ranges = s.ranges()
        assert all(b1 + 1 < a2 for (_, b1), (a2, _) in itertools.pairwise(ranges))  # merged
    if ref:
        lo, hi = min(ref), max(ref)
        missing = sorted(set(range(lo, hi + 1)) - ref)
        assert sum(b - a + 1 for a, b in s.gaps()) == len(missing)
        assert [x for a, b in s.gaps() for x in range(a, b + 1)] == missing
        assert s.count_in(lo + 3, hi - 3) == len([x for x in ref if lo + 3 <= x <= hi - 3])
    assert SeqSet.from_json(s.to_json()) == s
    assert all((x in s) == (x in ref) for x in range(0, 240))


def test_gaps_within_bounds() -> None:
    s = SeqSet([(5, 9), (20, 20)])
    assert s.gaps() == [(10, 19)]
    assert s.gaps(0, 25) == [(0, 4), (10, 19), (21, 25)]
    assert SeqSet().gaps(3, 4) == [(3, 4)]
    assert s.union(SeqSet([(10, 19)])).ranges() == [(5, 20)]
