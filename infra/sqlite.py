"""SQLite connections for the hub's databases (the catalog, the telemetry sink): one per thread,
in WAL mode, all closed together.

A connection per thread because sqlite3 objects are not meant to be shared by threads that use
them at once; WAL so the API's readers never wait for ingest's writers.
"""

import sqlite3
import threading
from pathlib import Path


class ThreadConnections:
    def __init__(self, path: Path, *, foreign_keys: bool = False) -> None:
        self.path = path
        self.foreign_keys = foreign_keys
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (raises ``sqlite3.DatabaseError``)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if self.foreign_keys:
                conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection; a thread that goes on gets a new one."""
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
