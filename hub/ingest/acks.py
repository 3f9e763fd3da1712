"""Acknowledging QoS 1 messages in the order they arrived, once each one is safe.

MQTT 3.1.1 asks a receiver to send PUBACKs in the order the PUBLISHes came. Frames become safe in
spool batches, status and events once the catalog has them; this sequencer lets each part report
"done" whenever it is, and sends the acks in arrival order, all that became due at once in one call.
Each connection is a generation: acks owed on an old connection are dropped (the broker resends
those messages).
"""

import threading
from collections.abc import Callable
from typing import NamedTuple


class AckToken(NamedTuple):
    generation: int
    n: int


class AckSequencer:
    def __init__(self, send_acks: Callable[[list[int], int], object]) -> None:
        """``send_acks(mids, generation)`` sends the PUBACKs for ``mids`` on connection ``generation``."""
        self._send_acks = send_acks
        self._lock = threading.Lock()
        self._generation = 0
        self._next_index = 0  # index the next received message gets
        self._release_index = 0  # lowest index not yet acknowledged
        self._mids: dict[int, int] = {}
        self._done: set[int] = set()
        self.sent = 0

    def received(self, mid: int) -> AckToken:
        with self._lock:
            index = self._next_index
            self._next_index += 1
            self._mids[index] = mid
            return AckToken(self._generation, index)

    def done(self, token: AckToken) -> None:
        with self._lock:
            if token.generation != self._generation or token.n not in self._mids:
                return
            self._done.add(token.n)
            self._release()

    def done_many(self, tokens: list[AckToken]) -> None:
        with self._lock:
            generation, mids, done = self._generation, self._mids, self._done
            for token in tokens:
                if token.generation == generation and token.n in mids:
                    done.add(token.n)
            self._release()

    def _release(self) -> None:
        index, done, mids = self._release_index, self._done, self._mids
        due: list[int] = []
        while index in done:
            done.discard(index)
            due.append(mids.pop(index))
            index += 1
        if due:
            self._release_index = index
            self.sent += len(due)
            self._send_acks(due, self._generation)

    def reset(self, generation: int) -> None:
        """A new connection: forget what was owed on the old one."""
        with self._lock:
            self._generation = generation
            self._mids.clear()
            self._done.clear()
            self._release_index = self._next_index

    @property
    def outstanding(self) -> int:
        return len(self._mids)
