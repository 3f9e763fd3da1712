"""Real car daemons and hubs as processes (``paddock car run``, ``paddock hub serve``, through
tests/hub/cli.py) for fault tests and the soak: started, killed with SIGKILL and started again by
PID, a car optionally inside a :class:`tests.servers.netns.CarNetwork`."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import infra.config
from edge.config import CarConfig
from schemas.topics import Topics
from tests.edge.harness import Observer, until
from tests.hub.conftest import wait_until
from tests.servers.netns import CarNetwork

ROOT = Path(__file__).resolve().parents[2]


class _Process:
    """A ``tests.hub.cli`` command as a process of its own, logging to ``log``."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str]) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing flushed (a car's broker publishes its will)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a clean stop); SIGKILL after ``timeout``. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
                return -9
        return proc.returncode

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


CLI = [sys.executable, "-m", "tests.hub.cli"]


class CarProcess(_Process):
    """``paddock car run --config FILE`` for ``config``."""

    def __init__(self, config: CarConfig, workdir: Path, net: CarNetwork | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / f"{config.car.id}.log")
        self.config = config
        self.net = net
        self.config_path = workdir / f"{config.car.id}.toml"
        self.config_path.write_text(infra.config.commented_toml(config, [f"car {config.car.id}"]))

    def start(self) -> "CarProcess":
        argv = [*CLI, "car", "run", "--config", str(self.config_path)]
        self._spawn(self.net.argv(argv) if self.net is not None else argv)
        return self


class HubProcess(_Process):
    """``paddock hub serve --config FILE``; :meth:`start` returns once it has connected to MQTT."""

    def __init__(self, config: Path, log: Path) -> None:
        super().__init__(log)
        self.config = config

    def connections(self) -> int:
        return self.log.read_text(errors="replace").count("connected to mqtt://") if self.log.exists() else 0

    def start(self) -> None:
        before = self.connections()
        self._spawn([*CLI, "hub", "serve", "--config", str(self.config)])
        proc = self.proc
        assert proc is not None
        wait_until(lambda: self.connections() > before or proc.poll() is not None, 60, what="hub connected")
        assert proc.poll() is None, self.tail()


class Operator(Observer):
    """The operator's client in the test's namespace: commands a car, watches what it says."""

    def __init__(self, url: str, topics: Topics, car: str) -> None:
        super().__init__(url, [f"{topics.root}/cars/{car}/#"], identifier=f"op-{car}")
        self.t = topics
        self.car = car

    async def __aenter__(self) -> "Operator":
        await super().__aenter__()
        return self

    def births(self) -> list[dict[str, Any]]:
        return [s for s in self.json(self.t.car_status(self.car)) if s["state"] == "online"]

    def response(self, name: str, transaction: str) -> dict[str, Any] | None:
        found = [
            r
            for r in self.json(self.t.command_response(self.car, name))
            if r.get("transaction") == transaction
        ]
        return found[-1] if found else None

    async def command(self, name: str, body: dict[str, Any], limit_s: float = 30.0) -> dict[str, Any]:
        tx = f"{name}-{time.monotonic_ns()}"
        await self.publish(self.t.command(self.car, name), {**body, "transaction": tx})
        response = await until(lambda: self.response(name, tx), limit_s, f"the car's answer to {name}")
        assert response["status"] == "ok", response
        return dict(response["data"] or {})

    def last_telemetry(self) -> dict[str, Any]:
        return self.json(self.t.telemetry(self.car))[-1]


def rss_kb(pid: int) -> int:
    """Resident memory of a process (``VmRSS`` in /proc), in KiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0
