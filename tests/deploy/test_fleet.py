"""`paddock fleet`: identities, Mosquitto's files, credentials bundles; the ACL's filter logic."""

import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from deploy.cli import app
from deploy.fleet.acl import filter_within, topic_matches
from deploy.fleet.identities import FleetStore
from deploy.fleet.passwords import hash_password, verify_password
from tests.servers import require_binary

runner = CliRunner()


def fleet(directory: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["fleet", *args, "--dir", str(directory)])
    return result.exit_code, result.stdout, result.stderr


def test_hashes_are_mosquittos(tmp_path: Path) -> None:
    """Our $7$ hash checks a password that mosquitto_passwd hashed (the other way round: the ACL
    matrix tests log in to Mosquitto with the files we write)."""
    binary = require_binary("mosquitto_passwd", "mosquitto")
    path = tmp_path / "passwd"
    subprocess.run([binary, "-b", "-c", str(path), "alice", "s3cret"], check=True)
    hashed = path.read_text().strip().split(":", 1)[1]
    assert hashed.startswith("$7$")
    assert verify_password("s3cret", hashed)
    assert not verify_password("s3cret!", hashed)
    ours = hash_password("s3cret")
    assert verify_password("s3cret", ours) and not verify_password("other", ours)
    assert not verify_password("s3cret", "$6$rounds$not-ours") and not verify_password("x", "$7$x$y$z")


def test_add_list_remove(tmp_path: Path) -> None:
    code, out, _ = fleet(tmp_path, "add", "car-1", "--group", "red", "--broker", "mqtts://hub.lan:8883")
    assert code == 0, out
    assert fleet(tmp_path, "add", "gpu-1", "--role", "trainer")[0] == 0
    assert fleet(tmp_path, "add", "hub", "--role", "hub")[0] == 0
    code, out, _ = fleet(tmp_path, "list", "--json")
    listed = json.loads(out)
    assert [(i["name"], i["role"], i["groups"]) for i in listed["identities"]] == [
        ("car-1", "car", ["red"]),
        ("hub", "hub", []),
        ("gpu-1", "trainer", []),
    ]
    bundle = tmp_path / "bundles" / "car-1"
    password = (bundle / "password").read_text().strip()
    store = FleetStore.open(tmp_path)
    assert store.authenticate("car-1", password) is not None
    assert password not in (tmp_path / "identities.json").read_text()
    assert (bundle / "password").stat().st_mode & 0o077 == 0
    assert (tmp_path / "identities.json").stat().st_mode & 0o077 == 0
    assert (bundle / "broker-url").read_text().strip() == "mqtts://car-1@hub.lan:8883"
    toml = (bundle / "car.toml").read_text()
    assert 'id = "car-1"' in toml and 'group = "red"' in toml and 'password_file = "password"' in toml
    hub_env = (tmp_path / "bundles" / "hub" / "broker.env").read_text().strip()
    hub_password = (tmp_path / "bundles" / "hub" / "password").read_text().strip()
    assert hub_env == f"PADDOCK_BROKER=mqtts://hub:{hub_password}@hub.lan:8883"
    passwd = (tmp_path / "mosquitto" / "passwd").read_text()
    assert [line.split(":")[0] for line in passwd.splitlines()] == ["car-1", "gpu-1", "hub"]
    assert "user car-1\n" in (tmp_path / "mosquitto" / "acl").read_text()

    assert fleet(tmp_path, "remove", "car-1")[0] == 0
    assert not bundle.exists()
    assert "car-1" not in (tmp_path / "mosquitto" / "passwd").read_text()
    assert "car-1" not in (tmp_path / "mosquitto" / "acl").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "Car_1"], "invalid name 'Car_1'"),
        (["add", "car-1", "--role", "hub", "--group", "red"], "only cars belong to groups"),
        (["add", "car-1", "--broker", "http://x"], "scheme must be mqtt:// or mqtts://"),
        (["remove", "car-9"], "no identity named 'car-9'"),
    ],
)
def test_bad_requests_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    code, _, err = fleet(tmp_path, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_name_is_taken_once_for_all_roles(tmp_path: Path) -> None:
    assert fleet(tmp_path, "add", "gpu")[0] == 0
    code, _, err = fleet(tmp_path, "add", "gpu", "--role", "trainer")
    assert code == 2 and "'gpu' already exists (a car)" in err


def test_an_unreadable_store_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "identities.json").write_text("{not json")
    code, _, err = fleet(tmp_path, "list")
    assert code == 2 and "not a readable identity store" in err


@pytest.mark.parametrize(
    ("topic", "topic_filter", "expected"),
    [
        ("a/b/c", "a/+/c", True),
        ("a/b/c", "a/#", True),
        ("a", "a/#", True),
        ("a/b/c/d", "a/+/c", False),
        ("a/b", "a/b/c", False),
        ("$SYS/x", "#", False),
    ],
)
def test_topic_matches(topic: str, topic_filter: str, expected: bool) -> None:
    assert topic_matches(topic, topic_filter) is expected


@pytest.mark.parametrize(
    ("requested", "allowed", "expected"),
    [
        ("p/cars/c1/cmd/+", "p/cars/c1/cmd/+", True),
        ("p/cars/c1/cmd/mode", "p/cars/c1/cmd/+", True),
        ("p/cars/+/cmd/+", "p/cars/c1/cmd/+", False),
        ("p/cars/c1/cmd/#", "p/cars/c1/cmd/+", False),
        ("p/#", "p/cars/+/frames", False),
        ("p/cars/+/frames", "p/#", True),
        ("#", "p/#", False),
        ("p/cars/c1/cmd/+/response", "p/cars/c1/cmd/+", False),
    ],
)
def test_filter_within(requested: str, allowed: str, expected: bool) -> None:
    assert filter_within(requested, allowed) is expected


def test_fleet_ca_makes_the_ca_once_and_certificates_for_the_broker_and_each_identity(tmp_path: Path) -> None:
    from cryptography import x509

    assert fleet(tmp_path, "add", "car-1", "--broker", "mqtts://hub.lan:8883")[0] == 0
    code, out, _ = fleet(tmp_path, "ca", "--json")
    assert code == 0, out
    first = json.loads(out)
    assert first["new_ca"] and first["hosts"] == ["hub.lan", "localhost", "127.0.0.1"]
    broker = x509.load_pem_x509_certificate((tmp_path / "tls" / "broker.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "tls" / "ca.crt").read_bytes())
    broker.verify_directly_issued_by(ca)
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hub.lan", "localhost"]
    assert (tmp_path / "tls" / "ca.key").stat().st_mode & 0o077 == 0
    bundle = tmp_path / "bundles" / "car-1"
    assert (bundle / "ca.crt").read_bytes() == (tmp_path / "tls" / "ca.crt").read_bytes()
    x509.load_pem_x509_certificate((bundle / "client.crt").read_bytes()).verify_directly_issued_by(ca)
    assert 'ca_file = "ca.crt"' in (bundle / "car.toml").read_text()

    assert fleet(tmp_path, "add", "gpu", "--role", "trainer")[0] == 0
    assert (tmp_path / "bundles" / "gpu" / "client.crt").exists()
    second = json.loads(fleet(tmp_path, "ca", "--json", "--host", "broker.lan")[1])
    assert not second["new_ca"] and second["hosts"] == ["broker.lan"]
    assert (tmp_path / "tls" / "ca.crt").read_bytes() == ca.public_bytes(serialization.Encoding.PEM)
