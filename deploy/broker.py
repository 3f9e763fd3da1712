"""The embedded MQTT broker (amqtt, MQTT 3.1.1) for one laptop and for tests.

amqtt runs on its own event loop in a daemon thread, so a synchronous program (the demo, a pytest
fixture) and an asyncio one can both start and stop it.
"""

import asyncio
import contextlib
import logging
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from schemas.release import install_hint


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedBroker:
    """An in-process amqtt broker listening on ``host:port`` (a free port when ``port`` is 0).

    With ``fleet_dir`` (a ``paddock fleet`` directory) only the fleet's identities get in, each held
    to the access matrix of :mod:`deploy.fleet.acl`; without it every client may connect (for
    loopback only). A persistent session (clean
    session off: the hub, a trainer agent) keeps its subscriptions and QoS 1 messages while its
    client is away, for ``session_expiry_s`` after it left. Unlike Mosquitto, amqtt 0.12 does not
    resend a message it had sent to a client that died before acknowledging it."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_file: Path | None = None,
        session_expiry_s: int = 86_400,
        fleet_dir: Path | None = None,
    ) -> None:
        if session_expiry_s <= 0:
            raise ValueError(f"session_expiry_s must be positive, not {session_expiry_s}")
        self.host = host
        self.log_file = log_file
        self.session_expiry_s = session_expiry_s
        self.fleet_dir = fleet_dir
        self.port = port or free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> "EmbeddedBroker":
        try:
            from deploy.amqtt_broker import PaddockBroker
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(f"the embedded broker needs amqtt: {install_hint('embedded')}") from exc
        # amqtt logs every connection at INFO, and at ERROR a client that acknowledges a QoS 1
        # message late (the trainer agent acknowledges a job only once it is done): with a log file
        # its messages go there instead of the console.
        handler = logging.FileHandler(self.log_file) if self.log_file else None
        for name in ("amqtt", "transitions"):
            logger = logging.getLogger(name)
            logger.setLevel(logging.WARNING)
            if handler is not None:
                logger.addHandler(handler)
                logger.propagate = False
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": self._plugins(),
            "session_expiry_interval": self.session_expiry_s,
        }

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._broker = PaddockBroker(config, loop=loop)
                loop.run_until_complete(self._broker.start())
            except BaseException as exc:
                self._error = exc
                self._started.set()
                loop.close()
                return
            self._started.set()
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"amqtt-{self.port}", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"embedded broker did not start on {self.host}:{self.port} in {timeout}s")
        if self._error is not None:
            raise RuntimeError(f"embedded broker failed to start on {self.host}:{self.port}: {self._error}")
        return self

    def _plugins(self) -> dict[str, dict[str, str]]:
        if self.fleet_dir is None:
            return {"deploy.amqtt_broker.OpenDoor": {}}
        fleet = {"fleet_dir": str(self.fleet_dir.resolve())}
        return {"deploy.amqtt_broker.FleetAuth": fleet, "deploy.amqtt_broker.FleetTopicCheck": fleet}

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop)
        with contextlib.suppress(Exception):
            fut.result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
