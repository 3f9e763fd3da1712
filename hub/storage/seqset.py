"""A set of non-negative integers kept as sorted, disjoint, inclusive ranges.

Sequence numbers arrive almost always in order, so adding ``last + 1`` is O(1); anything else is a
binary search. Gaps are what the set does not hold between its first and last member.
"""

from bisect import bisect_right
from collections.abc import Iterable, Iterator


class SeqSet:
    __slots__ = ("_count", "_ends", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int] | list[int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._count = 0
        for a, b in ranges:
            self.add_range(int(a), int(b))

    # --- queries ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __contains__(self, x: object) -> bool:
        if not isinstance(x, int):
            return False
        i = bisect_right(self._starts, x) - 1
        return i >= 0 and x <= self._ends[i]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeqSet) and self._starts == other._starts and self._ends == other._ends

    def __repr__(self) -> str:
        return f"SeqSet({self.ranges()})"

    @property
    def first(self) -> int | None:
        return self._starts[0] if self._starts else None

    @property
    def last(self) -> int | None:
        return self._ends[-1] if self._ends else None

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def __iter__(self) -> Iterator[int]:
        for a, b in zip(self._starts, self._ends, strict=True):
            yield from range(a, b + 1)

    def gaps(self, lo: int | None = None, hi: int | None = None) -> list[tuple[int, int]]:
        """Missing ranges within ``[lo, hi]`` (default: between the first and the last member)."""
        if not self._starts:
            return [] if lo is None or hi is None or lo > hi else [(lo, hi)]
        lo = self.first if lo is None else lo
        hi = self.last if hi is None else hi
        assert lo is not None and hi is not None
        out: list[tuple[int, int]] = []
        cursor = lo
        for a, b in zip(self._starts, self._ends, strict=True):
            if b < cursor:
                continue
            if a > hi:
                break
            if a > cursor:
                out.append((cursor, min(a - 1, hi)))
            cursor = max(cursor, b + 1)
            if cursor > hi:
                break
        if cursor <= hi:
            out.append((cursor, hi))
        return out

    def count_in(self, lo: int, hi: int) -> int:
        """How many members lie in ``[lo, hi]``."""
        if lo > hi:
            return 0
        n = 0
        for a, b in zip(self._starts, self._ends, strict=True):
            if b < lo:
                continue
            if a > hi:
                break
            n += min(b, hi) - max(a, lo) + 1
        return n

    def union(self, other: "SeqSet") -> "SeqSet":
        out = self.copy()
        for a, b in other.ranges():
            out.add_range(a, b)
        return out

    def copy(self) -> "SeqSet":
        out = SeqSet()
        out._starts = list(self._starts)
        out._ends = list(self._ends)
        out._count = self._count
        return out

    # --- updates ----------------------------------------------------------------------------------
    def add(self, x: int) -> bool:
        """Add ``x``; return False if it was already there."""
        if x < 0:
            raise ValueError("SeqSet holds non-negative integers only")
        ends = self._ends
        if ends and x == ends[-1] + 1:  # the common case: the next seq in order
            ends[-1] = x
            self._count += 1
            return True
        i = bisect_right(self._starts, x) - 1
        if i >= 0 and x <= ends[i]:
            return False
        self._insert(i, x, x)
        return True

    def add_range(self, a: int, b: int) -> int:
        """Add ``[a, b]``; return how many members are new."""
        if a > b:
            return 0
        if a < 0:
            raise ValueError("SeqSet holds non-negative integers only")
        new = (b - a + 1) - self.count_in(a, b)
        if new == 0:
            return 0
        # Remove every range touching [a-1, b+1] and insert their union.
        starts, ends = self._starts, self._ends
        lo_i = bisect_right(ends, a - 2)  # first range whose end >= a - 1
        hi_i = bisect_right(starts, b + 1)  # ranges before this index start <= b + 1
        if lo_i < hi_i:
            a = min(a, starts[lo_i])
            b = max(b, ends[hi_i - 1])
        del starts[lo_i:hi_i]
        del ends[lo_i:hi_i]
        starts.insert(lo_i, a)
        ends.insert(lo_i, b)
        self._count += new
        return new

    def remove_range(self, a: int, b: int) -> int:
        """Remove ``[a, b]``; return how many members went."""
        if a > b:
            return 0
        removed = self.count_in(a, b)
        if removed == 0:
            return 0
        new_starts: list[int] = []
        new_ends: list[int] = []
        for s, e in zip(self._starts, self._ends, strict=True):
            if e < a or s > b:
                new_starts.append(s)
                new_ends.append(e)
                continue
            if s < a:
                new_starts.append(s)
                new_ends.append(a - 1)
            if e > b:
                new_starts.append(b + 1)
                new_ends.append(e)
        self._starts, self._ends = new_starts, new_ends
        self._count -= removed
        return removed

    def _insert(self, i: int, a: int, b: int) -> None:
        # i: index of the last range starting <= a (or -1). Merge with neighbours that touch.
        starts, ends = self._starts, self._ends
        merge_left = i >= 0 and ends[i] == a - 1
        merge_right = i + 1 < len(starts) and starts[i + 1] == b + 1
        if merge_left and merge_right:
            ends[i] = ends[i + 1]
            del starts[i + 1]
            del ends[i + 1]
        elif merge_left:
            ends[i] = b
        elif merge_right:
            starts[i + 1] = a
        else:
            starts.insert(i + 1, a)
            ends.insert(i + 1, b)
        self._count += b - a + 1

    # --- serialisation ----------------------------------------------------------------------------
    def to_json(self) -> list[list[int]]:
        return [[a, b] for a, b in self.ranges()]

    @classmethod
    def from_json(cls, data: Iterable[Iterable[int]] | None) -> "SeqSet":
        out = cls()
        for pair in data or ():
            a, b = pair
            out.add_range(int(a), int(b))
        return out
