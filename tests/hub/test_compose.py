"""The compose stack's files: they parse, point at files that exist, and the Mosquitto config
refuses anonymous clients, speaks TLS only and keeps every queued message for an offline persistent
subscriber (the default would drop them)."""

import getpass
import os
import queue
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml

from hub.config import HubConfig
from tests.servers.mosquitto import Mosquitto
from tests.transport.acl_matrix import Client, make_fleet

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose"


def test_compose_file_references_what_exists() -> None:
    spec = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    services = spec["services"]
    assert set(services) == {"mosquitto", "influxdb", "grafana", "prometheus", "hub"}
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name}: {source}"
    build = services["hub"]["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).is_file()
    assert services["hub"]["command"][:2] == ["hub", "serve"]
    # Prometheus reads deploy/prometheus/ and scrapes the hub at the port the hub publishes
    prom = (COMPOSE / "../prometheus/prometheus.yml").read_text()
    assert "hub:8080" in prom and "8080:8080" in services["hub"]["ports"]


def test_compose_hub_config_is_valid() -> None:
    cfg = HubConfig.load(COMPOSE / "hub.toml")
    assert cfg.mqtt.broker.host == "mosquitto" and cfg.mqtt.broker.tls and cfg.mqtt.ca_file is not None
    assert cfg.sinks.influxdb.enabled and cfg.sinks.influxdb.url == "http://influxdb:8086"
    assert cfg.api.host == "0.0.0.0"


class ComposeMosquitto(Mosquitto):
    """Mosquitto running deploy/compose/mosquitto.conf, moved to a loopback port and a temp dir."""

    conf = "mosquitto.conf"

    def __init__(self, workdir: Path, fleet: Path | None = None) -> None:
        super().__init__(workdir)
        self.fleet = fleet  # a `paddock fleet` directory with a CA

    def command(self) -> list[str]:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        text = (COMPOSE / self.conf).read_text() if self.conf else "listener 1883\nallow_anonymous true\n"
        text = text.replace("listener 8883", f"listener {self.port} {self.host}")
        text = text.replace("listener 1883", f"listener {self.port} {self.host}")
        text = text.replace("/mosquitto/data/", f"{data}/")
        text = text.replace("/mosquitto/fleet/", f"{self.fleet}/")
        if os.geteuid() == 0:
            text += f"user {getpass.getuser()}\n"
        self.config_path.write_text(text)
        return [self.binary, "-c", str(self.config_path)]


class DefaultMosquitto(ComposeMosquitto):
    conf = ""


Login = dict[str, tuple[str, str]]


def _client(
    client_id: str, login: tuple[str, str] | None, ca: Path | None, clean: bool = True
) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    if login is not None:
        client.username_pw_set(*login)
    if ca is not None:
        client.tls_set(ca_certs=str(ca))
    return client


def _queued_for_offline_subscriber(
    server: Mosquitto, n: int, logins: Login | None = None, ca: Path | None = None
) -> int:
    """Messages a persistent QoS 1 subscriber (the hub) gets after missing ``n`` while offline."""
    hub, car = (logins["hub"], logins["car-1"]) if logins else (None, None)
    sub = _client("hub-like", hub, ca, clean=False)
    sub.connect(server.host, server.port)
    sub.subscribe("paddock/v1/cars/+/frames", qos=1)
    sub.loop_start()
    time.sleep(0.2)
    sub.loop_stop()
    sub.disconnect()
    pub = _client("car-like", car, ca)
    pub.max_inflight_messages_set(200)
    pub.connect(server.host, server.port)
    pub.loop_start()
    infos = [pub.publish("paddock/v1/cars/car-1/frames", b"x" * 100, qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(30)
    pub.loop_stop()
    pub.disconnect()
    got: queue.Queue[int] = queue.Queue()
    sub = _client("hub-like", hub, ca, clean=False)
    sub.on_message = lambda _c, _u, _m: got.put(1)
    sub.connect(server.host, server.port)
    sub.loop_start()
    count, idle = 0, 0
    while idle < 10 and count < n:
        try:
            got.get(timeout=0.1)
            count += 1
            idle = 0
        except queue.Empty:
            idle += 1
    sub.loop_stop()
    sub.disconnect()
    return count


@pytest.fixture
def compose_fleet(tmp_path: Path) -> tuple[Path, Login]:
    """A fleet (car-1, hub, ...) with its CA: what the compose stack's Mosquitto mounts."""
    from deploy.fleet.identities import FleetStore
    from deploy.fleet.tls import issue, load_or_make_ca

    fleet = tmp_path / "fleet"
    passwords = make_fleet(fleet)
    ca, _ = load_or_make_ca(fleet / "tls")
    issue(ca, fleet / "tls" / "broker.key", fleet / "tls" / "broker.crt", "broker", hosts=["127.0.0.1"])
    assert FleetStore.open(fleet).identities.keys() == passwords.keys()
    return fleet, {name: (name, pw) for name, pw in passwords.items()}


def test_compose_mosquitto_refuses_anonymous_and_plain_clients(
    tmp_path: Path, compose_fleet: tuple[Path, Login]
) -> None:
    fleet, logins = compose_fleet
    server = ComposeMosquitto(tmp_path / "compose", fleet).start()
    url = f"mqtt://{server.host}:{server.port}"
    try:
        anonymous = Client(url, None, None)
        assert anonymous.connect(tls_ca=fleet / "tls" / "ca.crt") == 135
        anonymous.close()
        car = Client(url, *logins["car-1"])
        assert car.connect(tls_ca=fleet / "tls" / "ca.crt") == 0
        car.close()
        plain = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="plain")
        plain.username_pw_set(*logins["car-1"])
        plain.connect(server.host, server.port)  # a TLS listener: a plain CONNECT gets no CONNACK
        plain.loop_start()
        time.sleep(0.5)
        plain.loop_stop()
        assert not plain.is_connected()
    finally:
        server.stop()


def test_compose_mosquitto_keeps_every_queued_message(
    tmp_path: Path, compose_fleet: tuple[Path, Login]
) -> None:
    fleet, logins = compose_fleet
    server = ComposeMosquitto(tmp_path / "compose", fleet).start()
    try:
        assert _queued_for_offline_subscriber(server, 1500, logins, fleet / "tls" / "ca.crt") == 1500
    finally:
        server.stop()
    default = DefaultMosquitto(tmp_path / "default").start()
    try:  # what the setting prevents: the default config drops beyond 1000
        assert _queued_for_offline_subscriber(default, 1500) < 1500
    finally:
        default.stop()
