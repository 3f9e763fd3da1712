"""systemd ``Type=notify`` support without a dependency: READY, STATUS, STOPPING and watchdog pings.

The control loop pings the watchdog, and only while the event loop (MQTT, recorder, model
manager) also shows signs of life, so a stall in either part gets the daemon restarted by
systemd. Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.
"""

import asyncio
import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        watchdog = usec is not None and usec.isdigit() and (pid is None or pid == str(os.getpid()))
        # Ping at a quarter of the timeout: two missed pings still leave a margin.
        self.watchdog_interval_s: float | None = int(usec) / 1e6 / 4 if watchdog and usec else None
        self._sock: socket.socket | None = None
        self._last_ping = 0.0
        self.pings = 0
        self.ready_sent = False
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def _send(self, message: str) -> bool:
        if self._sock is None or self.address is None:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace
        try:
            self._sock.sendto(message.encode(), addr)
            return True
        except OSError as exc:  # never let a notification stop the car
            log.debug("sd_notify %r failed: %s", message, exc)
            return False

    def ready(self, status: str = "") -> None:
        if not self.ready_sent:
            self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))
            self.ready_sent = True

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog_due(self, now: float | None = None) -> bool:
        if self.watchdog_interval_s is None:
            return False
        now = time.monotonic() if now is None else now
        return now - self._last_ping >= self.watchdog_interval_s

    def ping(self, now: float | None = None) -> None:
        self._last_ping = time.monotonic() if now is None else now
        if self._send("WATCHDOG=1"):
            self.pings += 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Watchdog:
    """The control loop pings through :meth:`on_tick`; :meth:`heartbeat` runs on the event loop,
    and a ping goes out only while it has beaten within the last two ping intervals."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._heartbeat = time.monotonic()

    def on_tick(self) -> None:
        n = self.notifier
        if (
            n.watchdog_interval_s is not None
            and n.watchdog_due()
            and time.monotonic() - self._heartbeat < max(2.0, 2 * n.watchdog_interval_s)
        ):
            n.ping()

    async def heartbeat(self) -> None:
        while True:
            self._heartbeat = time.monotonic()
            await asyncio.sleep(0.25)
