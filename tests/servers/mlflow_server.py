"""A real MLflow tracking server (``mlflow server``, from the train extra) on a loopback port,
with an SQLite backend and served artefacts in its work directory."""

import sys
import urllib.request
from pathlib import Path

from tests.servers import ServerProcess


class MlflowServer(ServerProcess):
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "mlflow", "server",
            "--host", self.host, "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--artifacts-destination", str(self.workdir / "artifacts"),
        ]  # fmt: skip

    def ready_timeout(self) -> float:
        return 300.0  # it migrates a fresh database and imports its whole server first: slow when busy

    def wait_ready(self) -> None:
        with urllib.request.urlopen(f"{self.url}/health", timeout=10) as r:
            assert r.status == 200


def start_mlflow(workdir: Path) -> MlflowServer:
    server = MlflowServer(workdir)
    server.start()
    return server
