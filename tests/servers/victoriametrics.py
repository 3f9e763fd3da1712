"""VictoriaMetrics (Debian ``victoria-metrics``): accepts InfluxDB line protocol on /api/v2/write."""

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import ServerProcess, require_binary


class VictoriaMetrics(ServerProcess):
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.binary = require_binary("victoria-metrics", "victoria-metrics")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            "-retentionPeriod=100y",
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]

    def wait_ready(self) -> None:
        with urllib.request.urlopen(f"{self.url}/health", timeout=5) as r:
            assert r.status == 200

    def flush(self) -> None:
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
        """All series matching ``match`` as VictoriaMetrics' JSON-lines export."""
        self.flush()
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]
