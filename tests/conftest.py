"""Fixtures shared by every room's tests: real servers on loopback, the reference tracks."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.missing import missing
from tests.servers.amqtt import EmbeddedBroker
from tests.servers.influxdb1 import InfluxDB1
from tests.servers.mosquitto import Mosquitto
from tests.servers.s3 import MotoS3
from tests.servers.victoriametrics import VictoriaMetrics

# AWS DeepRacer reference tracks live beside the project, never inside it.
TRACKS_DIR = Path(
    os.environ.get("PADDOCK_TRACKS_DIR", Path(__file__).resolve().parents[2] / "shared" / "tracks")
)
# The commands under test resolve DeepRacer track names through this variable, as a user's shell would.
os.environ.setdefault("PADDOCK_TRACKS_DIR", str(TRACKS_DIR))


@pytest.fixture(scope="session")
def tracks_dir() -> Path:
    if not TRACKS_DIR.is_dir() or not list(TRACKS_DIR.glob("*.npy")):
        missing(f"reference tracks not found in {TRACKS_DIR} (set PADDOCK_TRACKS_DIR)")
    return TRACKS_DIR


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One private Mosquitto for the whole test session. Do not stop it; use ``mosquitto_factory``."""
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[type[Mosquitto]]:
    """Start private brokers that a test may stop, kill and restart; all are stopped afterwards."""
    started: list[Mosquitto] = []

    class _Factory(Mosquitto):
        def __init__(
            self,
            workdir: Path | None = None,
            port: int | None = None,
            extra_config: str = "",
            password_file: Path | None = None,
            acl_file: Path | None = None,
        ) -> None:
            super().__init__(
                workdir or tmp_path / f"mosquitto-{len(started)}", port, extra_config, password_file, acl_file
            )
            started.append(self)

    yield _Factory
    for server in started:
        server.stop()


@pytest.fixture
def amqtt_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Run a test once against Mosquitto and once against the embedded amqtt broker."""
    if request.param == "mosquitto":
        return str(request.getfixturevalue("mosquitto").url)
    return str(request.getfixturevalue("amqtt_broker").url)


@pytest.fixture(scope="session")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path_factory.mktemp("victoriametrics"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    server = InfluxDB1(tmp_path_factory.mktemp("influxdb1"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    with MotoS3() as server:
        yield server
