"""Everything a new car needs, written to a directory or an SD card's boot partition.

``paddock car provision`` writes, under ``OUT/paddock/``: ``car.toml`` (the car's id, broker,
actuators), ``hub.pub`` (the hub's model-signing key), ``broker.password`` (the car's own broker
identity), ``paddock-car.service`` and, with ``--wheel``, paddock's wheel; and ``OUT/user-data``, a
cloud-init recipe that Raspberry Pi OS runs on first boot: it installs Debian's camera and GPIO
packages, makes the venv, installs the wheel's ``car`` extra, moves the files to ``/etc/paddock``
(the password out of the FAT boot partition, which anyone holding the card can read) and enables
the service. docs/car.md walks through it from a blank card.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from deploy.systemd import car_unit
from edge.config import CarConfig, ConfigError
from schemas.ids import check_car_id
from schemas.mqtt_url import BrokerUrl

BOOT_DIR = "/boot/firmware"  # where Raspberry Pi OS (bookworm) mounts the boot partition
VENV = "/opt/paddock/venv"


class ProvisionError(ValueError):
    """Inputs that cannot make a working car."""


@dataclass(frozen=True)
class CarProvision:
    car_id: str
    broker_url: str
    broker_user: str
    broker_password: str
    hub_key: Path
    actuators: str = "pwm"
    wheel: Path | None = None
    hostname: str | None = None


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def car_toml(p: CarProvision) -> str:
    text = f"""# Written by `paddock car provision`; every other setting has its default
# (`paddock car config --example` lists them all).

[car]
id = {_toml_str(p.car_id)}

[broker]
url = {_toml_str(p.broker_url)}
password_file = "/etc/paddock/broker.password"

[actuators]
kind = {_toml_str(p.actuators)}
calibration = "/etc/paddock/calibration.toml"

[models]
public_key = "/etc/paddock/hub.pub"
"""
    return text


def user_data(p: CarProvision) -> str:
    """The cloud-init first-boot recipe (YAML; JSON strings are valid YAML scalars)."""
    src = f"{BOOT_DIR}/paddock"
    wheel = f"{src}/{p.wheel.name}" if p.wheel else None
    # Without --wheel, the wheel copied into the partition by hand (paddock_fleet-*.whl) is used.
    spec = json.dumps(wheel + "[car]") if wheel else f'"$(ls {src}/paddock_fleet-*.whl | tail -n 1)[car]"'
    install = f"{VENV}/bin/pip install {spec}"
    commands = [
        "useradd --system --home-dir /var/lib/paddock --groups video,gpio,i2c paddock || true",
        "install -d -m 0755 /etc/paddock",
        f"install -m 0644 {src}/car.toml {src}/hub.pub /etc/paddock/",
        f"install -m 0640 -g paddock {src}/broker.password /etc/paddock/broker.password",
        f"rm -f {src}/broker.password",
        f"python3 -m venv --system-site-packages {VENV}",
        install,
        f"install -m 0644 {src}/paddock-car.service /etc/systemd/system/paddock-car.service",
        "raspi-config nonint do_i2c 0 || true",
        "systemctl daemon-reload",
        "systemctl enable --now paddock-car.service",
    ]
    lines = [
        "#cloud-config",
        "# paddock: first boot installs the car daemon (written by `paddock car provision`).",
    ]
    if p.hostname:
        lines.append(f"hostname: {json.dumps(p.hostname)}")
    lines += ["package_update: true", "packages:"]
    lines += [f"  - {name}" for name in ("python3-venv", "python3-picamera2", "python3-lgpio", "i2c-tools")]
    lines.append("runcmd:")
    lines += [f"  - {json.dumps(['sh', '-c', cmd])}" for cmd in commands]
    return "\n".join(lines) + "\n"


def _check(p: CarProvision) -> None:
    try:
        check_car_id(p.car_id)
        BrokerUrl.parse(p.broker_url)
    except ValueError as exc:
        raise ProvisionError(str(exc)) from None
    try:
        key = load_pem_public_key(p.hub_key.read_bytes())
    except FileNotFoundError:
        raise ProvisionError(
            f"{p.hub_key}: no such file (the hub's public key: curl -o hub.pub http://HUB:8080/keys/public.pem)"
        ) from None
    except ValueError as exc:
        raise ProvisionError(f"{p.hub_key}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ProvisionError(f"{p.hub_key}: the hub signs with Ed25519; this is another kind of key")
    if p.wheel is not None and not (p.wheel.is_file() and p.wheel.name.endswith(".whl")):
        raise ProvisionError(f"{p.wheel}: not a wheel file (script/build makes one)")


def _with_user(url: str, user: str) -> str:
    scheme, sep, rest = url.partition("://")
    host = rest.rsplit("@", 1)[-1]
    return f"{scheme}{sep}{user}@{host}" if user else url


def provision(p: CarProvision, out: Path, cloud_init: bool = True, force: bool = False) -> list[Path]:
    """Write the car's files under ``out``; return what was written."""
    p = CarProvision(**{**p.__dict__, "broker_url": _with_user(p.broker_url, p.broker_user)})
    _check(p)
    try:  # the config the car will run with must validate here, not on the car
        CarConfig.from_dict(
            {"car": {"id": p.car_id}, "broker": {"url": p.broker_url}, "actuators": {"kind": p.actuators}}
        )
    except ConfigError as exc:
        raise ProvisionError(str(exc)) from None
    target = out / "paddock"
    existing = out / "user-data"
    if cloud_init and existing.exists() and "paddock" not in existing.read_text() and not force:
        raise ProvisionError(
            f"{existing} exists (Raspberry Pi Imager's settings?); merge ours by hand or pass --force"
        )
    target.mkdir(parents=True, exist_ok=True)
    written = [
        _write(target / "car.toml", car_toml(p)),
        _write(target / "hub.pub", p.hub_key.read_text()),
        _write(target / "broker.password", p.broker_password + "\n", mode=0o600),
        _write(target / "paddock-car.service", car_unit(f"{VENV}/bin/paddock", "/etc/paddock/car.toml")),
    ]
    if p.wheel is not None:
        shutil.copyfile(p.wheel, target / p.wheel.name)
        written.append(target / p.wheel.name)
    if cloud_init:
        written.append(_write(existing, user_data(p)))
    return written


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
