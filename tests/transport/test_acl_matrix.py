"""The access matrix of ARCHITECTURE.md §9 against real Mosquitto (with the files `paddock fleet`
writes) and against the embedded broker (with the same identity store), with real clients."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.broker import EmbeddedBroker
from deploy.fleet.mosquitto import ACL_FILE, PASSWORD_FILE
from tests.servers.mosquitto import Mosquitto
from tests.transport.acl_matrix import (
    PUBLISH_CASES,
    SUBSCRIBE_CASES,
    Client,
    format_matrix,
    make_fleet,
    run_publish_cases,
    run_subscribe_cases,
)


@pytest.fixture(params=["mosquitto", "amqtt"])
def fleet_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    fleet = tmp_path / "fleet"
    passwords = make_fleet(fleet)
    if request.param == "mosquitto":
        server = Mosquitto(
            tmp_path / "mosquitto", password_file=fleet / PASSWORD_FILE, acl_file=fleet / ACL_FILE
        )
        server.start()
        try:
            yield server.url, passwords
        finally:
            server.stop()
    else:
        with EmbeddedBroker(fleet_dir=fleet) as broker:
            yield broker.url, passwords


def test_only_fleet_identities_get_in(fleet_broker: tuple[str, dict[str, str]]) -> None:
    url, passwords = fleet_broker
    refused = {
        "anonymous": Client(url, None, None),
        "wrong password": Client(url, "car-1", passwords["car-2"]),
        "unknown user": Client(url, "car-9", passwords["car-1"]),
    }
    for what, client in refused.items():
        rc = client.connect()
        client.close()
        assert rc in (134, 135), f"{what}: CONNACK {rc}"  # bad user name or password; not authorised
    ok = Client(url, "car-1", passwords["car-1"])
    assert ok.connect() == 0
    ok.close()


def test_acl_matrix(fleet_broker: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    url, passwords = fleet_broker
    published = run_publish_cases(url, passwords)
    subscribed = run_subscribe_cases(url, passwords)
    with capsys.disabled():
        print(f"\nACL matrix on {url}\n{format_matrix(published, subscribed)}")
    wrong = [
        f"publish {who} {topic}: {'delivered' if published[(who, topic)][0] else 'dropped'}"
        for who, topic, allowed in PUBLISH_CASES
        if published[(who, topic)][0] != allowed
    ]
    wrong += [
        f"subscribe {who} {topic_filter}: suback {subscribed[(who, topic_filter)][0]:#x}, "
        f"{'received' if subscribed[(who, topic_filter)][1] else 'nothing'}"
        for who, topic_filter, _, _, allowed in SUBSCRIBE_CASES
        if subscribed[(who, topic_filter)][1] != allowed
        or (allowed and subscribed[(who, topic_filter)][0] == 0x80)
    ]
    assert not wrong, "\n".join(wrong)
