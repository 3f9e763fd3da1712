"""Bounded hand-over queues between the control thread and the rest of the daemon.

The control loop must never wait on anyone: it offers items with :meth:`DropQueue.put`, which
never blocks; when the queue is full the item is dropped and counted, so loss is reported, never
silent. Consumers are threads (:meth:`get`) or coroutines (:meth:`async_get`).
"""

import asyncio
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class DropQueue(Generic[T]):
    def __init__(self, maxsize: int, name: str = "queue") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.name = name
        self._items: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self.dropped = 0
        self.accepted = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> bool:
        """Offer ``item``; False (and counted) when the queue is full or closed. Never blocks."""
        with self._cond:
            if self._closed or len(self._items) >= self.maxsize:
                self.dropped += 1
                return False
            self._items.append(item)
            self.accepted += 1
            self._cond.notify()
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed
                pass
        return True

    def get(self, timeout: float | None = None) -> T | None:
        """Take the oldest item, waiting up to ``timeout``; None on timeout or when closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            return self._items.popleft() if self._items else None

    def get_nowait(self) -> T | None:
        with self._cond:
            return self._items.popleft() if self._items else None

    async def async_get(self) -> T:
        """Wait (without blocking the event loop) for the oldest item."""
        loop = asyncio.get_running_loop()
        while True:
            event = asyncio.Event()
            with self._cond:
                if self._items:
                    return self._items.popleft()
                self._waiters.append((loop, event))
            await event.wait()

    def clear(self) -> int:
        """Drop everything waiting (counted); return how many."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self.dropped += n
            return n

    def close(self) -> None:
        """Refuse new items and wake every waiting thread; what is queued can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
