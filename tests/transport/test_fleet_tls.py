"""TLS end to end: `paddock fleet ca` certificates on Mosquitto's mqtts:// listener; the car's
link (from its credentials bundle) and the hub verify the broker, and refuse one they cannot."""

import asyncio
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.broker import free_port
from deploy.cli import app
from deploy.fleet.mosquitto import ACL_FILE, PASSWORD_FILE
from deploy.fleet.tls import load_or_make_ca
from edge.config import load_config
from edge.mqtt import BdseqStore, MqttLink
from hub import HubConfig, HubService
from schemas.messages import CarStatus
from schemas.topics import Topics
from tests.servers.mosquitto import Mosquitto

runner = CliRunner()
TLS_FILES = [("cafile", "ca.crt"), ("certfile", "broker.crt"), ("keyfile", "broker.key")]


def _fleet(directory: Path, *args: str) -> None:
    result = runner.invoke(app, ["fleet", *args, "--dir", str(directory)])
    assert result.exit_code == 0, result.output


@pytest.fixture
def tls_fleet(tmp_path: Path) -> tuple[Path, Mosquitto]:
    fleet, port = tmp_path / "fleet", free_port()
    _fleet(fleet, "add", "car-1", "--group", "red", "--broker", f"mqtts://127.0.0.1:{port}")
    _fleet(fleet, "add", "hub", "--role", "hub")
    _fleet(fleet, "add", "gpu-1", "--role", "trainer")
    _fleet(fleet, "ca")
    tls = fleet / "tls"
    server = Mosquitto(
        tmp_path / "mosquitto",
        port,
        extra_config="".join(f"{option} {tls / name}\n" for option, name in TLS_FILES),
        password_file=fleet / PASSWORD_FILE,
        acl_file=fleet / ACL_FILE,
    )
    return fleet, server


def _car_link(bundle: Path, bdseq: Path) -> MqttLink:
    config = load_config(bundle / "car.toml")
    return MqttLink(
        config,
        Topics(),
        bdseq=BdseqStore(bdseq),
        birth=lambda n: CarStatus(state="online", bdseq=n, ts=time.time()),
        death=lambda n: CarStatus(state="offline", bdseq=n, ts=time.time()),
        on_message=lambda _m: None,
        session_tasks=[],
    )


async def _connects(link: MqttLink, within_s: float) -> bool:
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), within_s)
        return True
    except TimeoutError:
        return False
    finally:
        await link.close()
        await asyncio.wait_for(task, 10)


async def test_the_car_and_the_hub_verify_the_broker(
    tls_fleet: tuple[Path, Mosquitto], tmp_path: Path
) -> None:
    fleet, server = tls_fleet
    server.start()
    try:
        car_bundle = fleet / "bundles" / "car-1"
        assert 'ca_file = "ca.crt"' in (car_bundle / "car.toml").read_text()
        assert (car_bundle / "client.crt").exists()
        link = _car_link(car_bundle, tmp_path / "bdseq")
        assert link.url.tls
        assert await _connects(link, 15), link.last_error

        hub_env = (fleet / "bundles" / "hub" / "broker.env").read_text().strip()
        hub_url = hub_env.removeprefix("PADDOCK_BROKER=")
        assert hub_url.startswith("mqtts://hub:")
        # the password from the bundle's file, not from the url (which a process list would show)
        bare_url = f"mqtts://hub@{hub_url.rpartition('@')[2]}"
        mqtt = {"url": bare_url, "client_id": "tls-hub", "ca_file": str(fleet / "tls" / "ca.crt"),
                "password_file": str(fleet / "bundles" / "hub" / "password")}  # fmt: skip
        api = {"host": "127.0.0.1", "port": 0}
        hub = HubService(HubConfig(data_dir=tmp_path / "hub", mqtt=mqtt, api=api))
        await hub.start()
        try:
            assert await hub.wait_connected(15)
        finally:
            await hub.stop()
    finally:
        server.stop()


async def test_a_car_refuses_a_broker_its_ca_did_not_sign(
    tls_fleet: tuple[Path, Mosquitto], tmp_path: Path
) -> None:
    fleet, server = tls_fleet
    server.start()
    try:
        stranger = tmp_path / "other-ca"
        load_or_make_ca(stranger, "someone else's CA")
        bundle = fleet / "bundles" / "car-1"
        (bundle / "ca.crt").write_bytes((stranger / "ca.crt").read_bytes())
        link = _car_link(bundle, tmp_path / "bdseq")
        assert not await _connects(link, 3)
        assert link.connections == 0
        assert "certificate verify failed" in (link.last_error or ""), link.last_error
    finally:
        server.stop()


def test_the_trainer_agent_verifies_the_broker_with_the_fleet_ca(
    tls_fleet: tuple[Path, Mosquitto], tmp_path: Path
) -> None:
    from trainer.agent import AgentSettings, TrainerAgent

    fleet, server = tls_fleet
    env = (fleet / "bundles" / "gpu-1" / "broker.env").read_text().strip()
    url = env.removeprefix("PADDOCK_BROKER=").replace("mqtt://", "mqtts://", 1)
    assert url.startswith("mqtts://gpu-1:"), url
    server.start()
    try:
        for ca, subscribes in ((fleet / "tls" / "ca.crt", True), (None, False)):
            settings = AgentSettings(broker=url, store=str(tmp_path / "store"), work_dir=str(tmp_path / "a"),
                                     ca_file=str(ca) if ca else None, client_id="tls-gpu-1")  # fmt: skip
            agent = TrainerAgent(settings).start()
            try:
                # the system's CAs do not know the fleet's: without its CA the agent never gets in
                assert agent.subscribed.wait(10 if subscribes else 3) is subscribes
            finally:
                agent.stop(5)
    finally:
        server.stop()
