"""One pacer for every fixed-rate loop on the car (control loop, camera threads, simulated clock).

Ticks are scheduled on an absolute grid (``start + n * period``), so small delays never accumulate
into drift. When a tick starts later than its slot by more than a whole period, the slots that were
missed are counted and skipped rather than run back to back. Lateness of every tick is recorded so
loops can report p50/p99.
"""

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class TimingStats:
    ticks: int
    missed: int
    late_p50_ms: float
    late_p99_ms: float
    late_max_ms: float
    period_ms: float


class CycleTimer:
    """Paces a loop at ``hz`` ticks per second.

    Use :meth:`wait` in a thread or :meth:`async_wait` in a coroutine at the top of each iteration::

        timer = CycleTimer(30)
        while running:
            tick = timer.wait()      # blocks until this tick's slot; returns the tick index
            ...                      # the work of one tick
    """

    def __init__(
        self,
        hz: float,
        *,
        window: int = 1024,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not 0 < hz <= 10_000:
            raise ValueError(f"rate must be in (0, 10000] Hz, got {hz}")
        self.hz = float(hz)
        self.period = 1.0 / self.hz
        self._clock = clock
        self._start: float | None = None
        self._next = 0  # index of the next slot
        self.ticks = 0
        self.missed = 0
        self._late: deque[float] = deque(maxlen=window)

    def reset(self) -> None:
        self._start = None
        self._next = 0

    def _schedule(self) -> float:
        """Return seconds to sleep until the next slot (may be negative) and account for misses."""
        now = self._clock()
        if self._start is None:
            self._start = now
            return 0.0
        due = self._start + self._next * self.period
        if now - due > self.period:
            skipped = int((now - due) // self.period)
            self.missed += skipped
            self._next += skipped
            due = self._start + self._next * self.period
        return due - now

    def _record(self) -> int:
        assert self._start is not None
        due = self._start + self._next * self.period
        self._late.append(max(0.0, self._clock() - due))
        tick = self._next
        self._next += 1
        self.ticks += 1
        return tick

    def wait(self) -> int:
        """Sleep until the next slot; return its index."""
        delay = self._schedule()
        if delay > 0:
            time.sleep(delay)
        return self._record()

    async def async_wait(self) -> int:
        delay = self._schedule()
        if delay > 0:
            await asyncio.sleep(delay)
        return self._record()

    @property
    def last_late_s(self) -> float:
        """How late the latest tick started after its slot (0 before the first)."""
        return self._late[-1] if self._late else 0.0

    def stats(self) -> TimingStats:
        late = np.asarray(self._late, dtype=np.float64) * 1000.0
        if late.size == 0:
            return TimingStats(self.ticks, self.missed, 0.0, 0.0, 0.0, self.period * 1000)
        return TimingStats(
            ticks=self.ticks,
            missed=self.missed,
            late_p50_ms=float(np.percentile(late, 50)),
            late_p99_ms=float(np.percentile(late, 99)),
            late_max_ms=float(late.max()),
            period_ms=self.period * 1000,
        )
