"""`paddock car provision`: the files a new car needs, and a first-boot recipe that uses them."""

import stat
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from typer.testing import CliRunner

from deploy.cli import app
from edge.config import load_config
from schemas.signing import public_key_pem

runner = CliRunner()


def _hub_key(tmp_path: Path) -> Path:
    path = tmp_path / "hub.pub"
    path.write_bytes(public_key_pem(Ed25519PrivateKey.generate().public_key()))
    return path


def test_provision_a_boot_partition(tmp_path: Path) -> None:
    boot, key = tmp_path / "bootfs", _hub_key(tmp_path)
    boot.mkdir()
    wheel = tmp_path / "paddock_fleet-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    args = [
        "car",
        "provision",
        str(boot),
        "--car-id",
        "car-7",
        "--broker",
        "mqtt://hub.local:1883",
        "--hub-key",
        str(key),
        "--wheel",
        str(wheel),
        "--actuators",
        "none",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mosquitto_passwd -b /etc/mosquitto/passwd car-7 " in result.output
    files = boot / "paddock"
    assert sorted(p.name for p in files.iterdir()) == sorted(
        ["car.toml", "hub.pub", "broker.password", "paddock-car.service", wheel.name]
    )
    assert stat.S_IMODE((files / "broker.password").stat().st_mode) == 0o600
    assert len((files / "broker.password").read_text().strip()) >= 24
    cfg = load_config(files / "car.toml")  # the daemon's own loader accepts it
    assert cfg.car.id == "car-7" and cfg.actuators.kind == "none"
    assert cfg.broker.url == "mqtt://car-7@hub.local:1883"
    assert str(cfg.broker.password_file) == "/etc/paddock/broker.password"
    assert (
        "ExecStart=/opt/paddock/venv/bin/paddock car run --config /etc/paddock/car.toml"
        in (files / "paddock-car.service").read_text()
    )
    recipe = (boot / "user-data").read_text()
    assert recipe.startswith("#cloud-config\n")
    doc = yaml.safe_load(recipe)
    assert doc["hostname"] == "car-7" and "python3-picamera2" in doc["packages"]
    commands = [c[2] for c in doc["runcmd"]]
    assert f'/opt/paddock/venv/bin/pip install "/boot/firmware/paddock/{wheel.name}[car]"' in commands
    assert commands[-1] == "systemctl enable --now paddock-car.service"
    assert any(c.startswith("rm -f /boot/firmware/paddock/broker.password") for c in commands)


def test_imager_user_data_is_kept_unless_forced(tmp_path: Path) -> None:
    boot, key = tmp_path / "bootfs", _hub_key(tmp_path)
    boot.mkdir()
    (boot / "user-data").write_text("#cloud-config\nhostname: from-imager\n")
    args = [
        "car",
        "provision",
        str(boot),
        "--car-id",
        "car-8",
        "--broker",
        "mqtt://hub:1883",
        "--hub-key",
        str(key),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--force" in result.output
    assert "from-imager" in (boot / "user-data").read_text()
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_bad_inputs_are_one_clear_line(tmp_path: Path) -> None:
    rsa = tmp_path / "rsa.pub"
    from cryptography.hazmat.primitives import serialization

    rsa.write_bytes(
        generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    base = ["car", "provision", str(tmp_path / "out"), "--broker", "mqtt://hub:1883"]
    for extra, words in (
        (["--car-id", "Car_7", "--hub-key", str(_hub_key(tmp_path))], "car"),
        (["--car-id", "car-1", "--hub-key", str(tmp_path / "none.pub")], "no such file"),
        (["--car-id", "car-1", "--hub-key", str(rsa)], "Ed25519"),
    ):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert words in result.output and "Traceback" not in result.output
