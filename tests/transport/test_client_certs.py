"""Identities on real Mosquitto with the shipped configs' options.

- ``deploy/compose/mosquitto-mtls.conf``, run as shipped: a client proves who it is with the certificate
  `paddock fleet ca` put in its bundle; the broker holds it to that identity's ACL. No
  certificate, or one from another CA, is refused. The car's link, the hub and the trainer agent
  present theirs from their configuration.
- ``use_username_as_clientid`` (both shipped configs; ``mosquitto.conf`` run as shipped): an
  identity connecting with a car's client id does not throw the car off; the embedded broker
  refuses such a client.
"""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.broker import EmbeddedBroker
from deploy.cli import app
from deploy.fleet.tls import issue, load_or_make_ca
from edge.config import load_config
from edge.mqtt import BdseqStore, MqttLink
from hub import HubConfig, HubService
from schemas.messages import CarStatus
from schemas.topics import Topics
from tests.hub.test_compose import ComposeMosquitto, make_compose_fleet
from tests.servers.mosquitto import Mosquitto
from tests.transport.acl_matrix import Client

P = "paddock/v1"
runner = CliRunner()


class MtlsMosquitto(ComposeMosquitto):
    """Mosquitto running deploy/compose/mosquitto-mtls.conf as shipped (on a loopback port)."""

    conf = "mosquitto-mtls.conf"


def _fleet(directory: Path, *args: str) -> None:
    result = runner.invoke(app, ["fleet", *args, "--dir", str(directory)])
    assert result.exit_code == 0, result.output


@pytest.fixture
def mtls(tmp_path: Path) -> Iterator[tuple[Path, Mosquitto]]:
    """A fleet with client certificates, and Mosquitto with the shipped mTLS config."""
    fleet = tmp_path / "fleet"
    server = MtlsMosquitto(tmp_path / "mosquitto", fleet)
    _fleet(fleet, "add", "car-1", "--broker", f"mqtts://127.0.0.1:{server.port}")
    _fleet(fleet, "add", "car-2")
    _fleet(fleet, "add", "ops", "--role", "operator")
    _fleet(fleet, "add", "hub", "--role", "hub")
    _fleet(fleet, "ca")
    _fleet(fleet, "add", "gpu-1", "--role", "trainer")  # added after the CA: gets its certificate now
    server.start()
    try:
        yield fleet, server
    finally:
        server.stop()


def _cert_client(url: str, fleet: Path, name: str | None, ca_dir: Path | None = None) -> Client:
    """A client with ``name``'s certificate (none for None), no password, trusting the fleet's CA."""
    client = Client(url, None, None)
    bundle = fleet / "bundles" / (name or "")
    ca_dir = ca_dir or bundle
    cert = (str(ca_dir / "client.crt"), str(ca_dir / "client.key")) if name else (None, None)
    client._client.tls_set(ca_certs=str(fleet / "tls" / "ca.crt"), certfile=cert[0], keyfile=cert[1])
    return client


def _connects(client: Client) -> bool:
    try:
        return client.connect(timeout=5) == 0
    except Exception:  # refused in the handshake (TLS 1.2), or the connection closed after it (1.3)
        return False
    finally:
        if not client.disconnected.is_set():
            time.sleep(0.2)


def test_a_fleet_certificate_is_its_identity_and_other_clients_are_refused(
    mtls: tuple[Path, Mosquitto], tmp_path: Path
) -> None:
    fleet, server = mtls
    url = server.url
    ops, car = _cert_client(url, fleet, "ops"), _cert_client(url, fleet, "car-1")
    assert _connects(ops) and _connects(car)
    try:
        assert ops.subscribe(f"{P}/#") == 1
        # as car-1: its own telemetry goes through; car-2's, and a command to itself, do not
        for topic in (f"{P}/cars/car-2/telemetry", f"{P}/cars/car-1/cmd/mode"):
            car.publish(topic, b"forged")
        car.publish(f"{P}/cars/car-1/telemetry", b"mine")
        seen = ops.wait_for(b"mine")
        assert seen == [(f"{P}/cars/car-1/telemetry", b"mine")], seen
    finally:
        car.close()
        ops.close()
    stranger = tmp_path / "stranger"
    load_or_make_ca(stranger, "someone else's CA")
    issue(load_or_make_ca(stranger)[0], stranger / "client.key", stranger / "client.crt", "car-1")
    refused = {
        "no certificate": _cert_client(url, fleet, None),
        "another CA's certificate": _cert_client(url, fleet, "car-1", ca_dir=stranger),
    }
    for what, client in refused.items():
        got_in = _connects(client)
        client.close()
        assert not got_in, f"{what}: let in"


async def test_the_car_the_hub_and_the_trainer_agent_present_their_certificates(
    mtls: tuple[Path, Mosquitto], tmp_path: Path
) -> None:
    from trainer.agent import AgentSettings, TrainerAgent

    fleet, server = mtls
    bundles = fleet / "bundles"
    config = load_config(bundles / "car-1" / "car.toml")
    assert config.broker.cert_file == (bundles / "car-1" / "client.crt").resolve()
    link = MqttLink(
        config,
        Topics(),
        bdseq=BdseqStore(tmp_path / "bdseq"),
        birth=lambda n: CarStatus(state="online", bdseq=n, ts=time.time()),
        death=lambda n: CarStatus(state="offline", bdseq=n, ts=time.time()),
        on_message=lambda _m: None,
        session_tasks=[],
    )
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 15)
    finally:
        await link.close()
        await asyncio.wait_for(task, 10)

    tls = {"ca_file": str(fleet / "tls" / "ca.crt"), "cert_file": str(bundles / "hub" / "client.crt"),
           "key_file": str(bundles / "hub" / "client.key")}  # fmt: skip
    mqtt = {"url": f"mqtts://127.0.0.1:{server.port}", **tls}
    hub = HubService(HubConfig(data_dir=tmp_path / "hub", mqtt=mqtt, api={"host": "127.0.0.1", "port": 0}))
    await hub.start()
    try:
        assert await hub.wait_connected(15)
    finally:
        await hub.stop()

    settings = AgentSettings(
        broker=f"mqtts://gpu-1@127.0.0.1:{server.port}",
        store=str(tmp_path / "store"),
        work_dir=str(tmp_path / "agent"),
        ca_file=tls["ca_file"],
        cert_file=str(bundles / "gpu-1" / "client.crt"),
        key_file=str(bundles / "gpu-1" / "client.key"),
    )
    agent = TrainerAgent(settings).start()
    try:
        assert agent.subscribed.wait(10)
    finally:
        agent.stop(5)


def _config_with_only_a_cert(section: str, tmp_path: Path) -> object:
    from edge.config import CarConfig

    only_cert = {"cert_file": str(tmp_path / "client.crt")}
    if section == "car broker":
        broker = {"url": "mqtts://b:8883", **only_cert}
        return CarConfig.model_validate({"car": {"id": "car-1"}, "broker": broker})
    if section == "hub mqtt":
        return HubConfig(data_dir=tmp_path, mqtt={"url": "mqtts://b:8883", **only_cert})
    return HubConfig(data_dir=tmp_path, api=only_cert)


@pytest.mark.parametrize("section", ["car broker", "hub mqtt", "hub api"])
def test_a_certificate_without_its_key_is_refused_when_the_config_is_read(
    section: str, tmp_path: Path
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cert_file and key_file go together"):
        _config_with_only_a_cert(section, tmp_path)


@pytest.fixture(params=["mosquitto", "amqtt"])
def plain_fleet(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str], Path | None]]:
    """(url, passwords, CA) of a broker with passwords: Mosquitto running the shipped mosquitto.conf
    (TLS), or the embedded broker."""
    fleet, logins = make_compose_fleet(tmp_path)
    passwords = {name: pw for name, (_, pw) in logins.items()}
    if request.param == "amqtt":
        with EmbeddedBroker(fleet_dir=fleet) as broker:
            yield broker.url, passwords, None
        return
    server = ComposeMosquitto(tmp_path / "compose", fleet).start()
    try:
        yield f"mqtt://{server.host}:{server.port}", passwords, fleet / "tls" / "ca.crt"
    finally:
        server.stop()


def test_another_identity_with_a_cars_client_id_does_not_throw_the_car_off(
    plain_fleet: tuple[str, dict[str, str], Path | None],
) -> None:
    url, passwords, ca = plain_fleet
    broker = "mosquitto" if ca else "amqtt"
    car_id = "paddock-car-car-1"
    car = Client(url, "car-1", passwords["car-1"], client_id=car_id)
    ops = Client(url, "ops", passwords["ops"])
    assert car.connect(ca) == 0 and ops.connect(ca) == 0
    try:
        assert ops.subscribe(f"{P}/cars/+/telemetry") == 1
        for who in ("car-2", "gpu", "hub"):
            intruder = Client(url, who, passwords[who], client_id=car_id)
            rc = intruder.connect(ca)
            # Mosquitto lets it in under its own name; the embedded broker refuses it
            assert rc == (0 if broker == "mosquitto" else 135), f"{who}: CONNACK {rc}"
            intruder.close()
        time.sleep(0.5)
        assert not car.disconnected.is_set(), f"{broker}: the car was thrown off"
        assert car.publish(f"{P}/cars/car-1/telemetry", b"still here")
        assert ops.wait_for(b"still here")
    finally:
        car.close()
        ops.close()
