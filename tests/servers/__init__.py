"""Real servers on free loopback ports for tests: started here, stopped by PID.

A test that needs a server binary that is not installed skips with a message saying what to
install — except under ``CI=true``, where it fails, so CI never passes by skipping.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from deploy.broker import free_port
from tests.missing import missing


def require_binary(name: str, debian_package: str) -> str:
    """Path of ``name``; skip (or fail under CI) with an install hint when it is missing."""
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if path:
        return path
    missing(f"{name} is not installed: apt-get install {debian_package}")


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``port`` takes connections; with ``proc``, until ``proc`` (or a child of it) is what
    listens there: a free port picked in advance can be taken meanwhile by any process binding a
    random one (a Dask worker in CI found its port taken: its bind failed while the port answered),
    and a connection alone would then say that a server which is about to fail is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on {port}")
        if answers(host, port) and (proc is None or listens(proc.pid, port)):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def answers(host: str, port: int) -> bool:
    """Whether something takes a TCP connection on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` or one of its children has a listening TCP socket on ``port``."""
    import psutil

    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            for p in family
            for c in p.net_connections(kind="tcp")
        )
    except psutil.Error:
        return False


class PortTaken(RuntimeError):
    """The server could not bind its port: another process holds it."""


class ServerProcess:
    """A server subprocess with a fixed port, so it can be stopped and started again at the same address."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self._may_move = port is None  # a port it picked itself, and never served on yet
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready_timeout(self) -> float:
        return 20.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def start(self) -> "ServerProcess":
        """Start and wait until ready. A port picked for it and taken by another process before
        the first start is picked again (twice at most); a port served on before is kept, so a
        restarted server comes back at the same address."""
        for _ in range(2):
            try:
                return self._start()
            except PortTaken:
                if not self._may_move:
                    raise
                self.port = free_port()
        return self._start()

    def _start(self) -> "ServerProcess":
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
        )
        log.close()
        try:
            wait_for_port(self.host, self.port, self.ready_timeout(), self.proc)
            self.wait_ready()
        except Exception as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            error = PortTaken if answers(self.host, self.port) else RuntimeError  # after our stop
            raise error(f"{type(self).__name__} did not start: {exc}\n{tail}") from exc
        self._may_move = False
        return self

    def wait_ready(self) -> None:
        """Extra readiness check after the port opens (HTTP health, ...)."""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the server by PID: ``sig`` first, SIGKILL if it has not exited within ``timeout``."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()
