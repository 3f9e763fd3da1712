"""A Dask scheduler and workers as subprocesses on loopback (``python -m dask scheduler|worker``),
stopped by PID; a worker runs without a nanny, so a worker killed stays dead like a lost machine."""

import sys
from pathlib import Path

from tests.servers import ServerProcess


class DaskScheduler(ServerProcess):
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "dask",
            "scheduler",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--no-dashboard",
        ]

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"


class DaskWorker(ServerProcess):
    """One single-threaded worker process; ``port`` is the port it serves on."""

    def __init__(self, workdir: Path, scheduler: DaskScheduler, name: str) -> None:
        super().__init__(workdir)
        self.scheduler = scheduler
        self.name = name

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "dask",
            "worker",
            self.scheduler.address,
            "--name",
            self.name,
            "--nthreads",
            "1",
            "--no-nanny",
            "--no-dashboard",
            "--host",
            self.host,
            "--worker-port",
            str(self.port),
            "--local-directory",
            str(self.workdir),
        ]

    def ready_timeout(self) -> float:
        return 60.0  # imports numpy, scipy and the simulator on a busy machine
