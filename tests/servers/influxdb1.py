"""InfluxDB 1.x (Debian ``influxdb``): runs the Grafana dashboards' InfluxQL queries."""

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from deploy.broker import free_port
from tests.servers import ServerProcess, require_binary


class InfluxDB1(ServerProcess):
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.binary = require_binary("influxd", "influxdb")
        self.rpc_port = free_port()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        d = self.workdir
        config = d / "influxdb.conf"
        config.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "{self.host}:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d / "meta"}"\n'
            f'[data]\n  dir = "{d / "data"}"\n  wal-dir = "{d / "wal"}"\n  query-log-enabled = false\n'
            f'[http]\n  bind-address = "{self.host}:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
        )
        return [self.binary, "-config", str(config)]

    def wait_ready(self) -> None:
        with urllib.request.urlopen(f"{self.url}/ping", timeout=5) as r:
            assert r.status == 204

    def query(self, q: str, db: str | None = None, epoch: str | None = None) -> dict[str, Any]:
        params = {"q": q}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{self.url}/query", data=data), timeout=10) as r:
            result: dict[str, Any] = json.loads(r.read())
        return result

    def write(self, db: str, lines: str, precision: str = "ns") -> None:
        url = f"{self.url}/write?{urllib.parse.urlencode({'db': db, 'precision': precision})}"
        req = urllib.request.Request(url, data=lines.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 204
