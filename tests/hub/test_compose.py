"""The compose stack's files: they parse, point at files that exist, and the Mosquitto config
keeps every queued message for an offline persistent subscriber (the default would drop them)."""

import getpass
import os
import queue
import time
from pathlib import Path

import paho.mqtt.client as paho
import yaml

from hub.config import HubConfig
from tests.servers.mosquitto import Mosquitto

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
    assert cfg.mqtt.broker.host == "mosquitto"
    assert cfg.sinks.influxdb.enabled and cfg.sinks.influxdb.url == "http://influxdb:8086"
    assert cfg.api.host == "0.0.0.0"


class ComposeMosquitto(Mosquitto):
    """Mosquitto running deploy/compose/mosquitto.conf, moved to a loopback port and a temp dir."""

    conf = "mosquitto.conf"

    def command(self) -> list[str]:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        text = (COMPOSE / self.conf).read_text() if self.conf else "listener 1883\nallow_anonymous true\n"
        text = text.replace("listener 1883", f"listener {self.port} {self.host}")
        text = text.replace("/mosquitto/data/", f"{data}/")
        if os.geteuid() == 0:
            text += f"user {getpass.getuser()}\n"
        self.config_path.write_text(text)
        return [self.binary, "-c", str(self.config_path)]


class DefaultMosquitto(ComposeMosquitto):
    conf = ""


def _queued_for_offline_subscriber(server: Mosquitto, n: int) -> int:
    """Messages a persistent QoS 1 subscriber gets after missing ``n`` while offline."""
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="hub-like", clean_session=False)
    sub.connect(server.host, server.port)
    sub.subscribe("q/#", qos=1)
    sub.loop_start()
    time.sleep(0.2)
    sub.loop_stop()
    sub.disconnect()
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="car-like")
    pub.max_inflight_messages_set(200)
    pub.connect(server.host, server.port)
    pub.loop_start()
    infos = [pub.publish(f"q/{i % 4}", b"x" * 100, qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(30)
    pub.loop_stop()
    pub.disconnect()
    got: queue.Queue[int] = queue.Queue()
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="hub-like", clean_session=False)
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


def test_compose_mosquitto_keeps_every_queued_message(tmp_path: Path) -> None:
    server = ComposeMosquitto(tmp_path / "compose").start()
    try:
        assert _queued_for_offline_subscriber(server, 1500) == 1500
    finally:
        server.stop()
    default = DefaultMosquitto(tmp_path / "default").start()
    try:  # what the setting prevents: the default config drops beyond 1000
        assert _queued_for_offline_subscriber(default, 1500) < 1500
    finally:
        default.stop()
