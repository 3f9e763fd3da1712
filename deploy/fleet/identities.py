"""The identity store: every car, trainer, operator and hub has its own broker identity.

One JSON file (``identities.json``, mode 0600) holds, per identity, its role, its groups (cars) and
the hash of its password; the password itself is only ever written to the identity's credentials
bundle. Names follow the car-id rule (``[a-z0-9-]{1,32}``) for every role, so a name is always safe
in a topic, an ACL file and a URL, and one name space serves all roles: a trainer can never share
a name with a car.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from deploy.fleet.passwords import generate_password, hash_password, verify_password
from infra.files import write_atomic
from schemas.errors import ContractError
from schemas.ids import check_car_id, check_group_id
from schemas.topics import DEFAULT_PREFIX, Topics

STORE_FILE = "identities.json"
STORE_VERSION = 1


class Role(StrEnum):
    CAR = "car"
    TRAINER = "trainer"
    OPERATOR = "operator"
    HUB = "hub"


class FleetError(ValueError):
    """A request the store cannot honour (unknown or duplicate name, bad id, unreadable store)."""


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role
    password_hash: str
    groups: tuple[str, ...] = ()
    """Cars only: the groups whose model topic the car may read."""
    created: float = 0.0
    broker_url: str | None = None
    """Where this identity reaches the broker, when not the fleet's address (the hub in compose)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["role"] = str(self.role)
        data["groups"] = list(self.groups)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Identity:
        return cls(
            name=check_car_id(data["name"]),
            role=Role(data["role"]),
            password_hash=str(data["password_hash"]),
            groups=tuple(check_group_id(g) for g in data.get("groups", ())),
            created=float(data.get("created", 0.0)),
            broker_url=data.get("broker_url"),
        )


@dataclass
class FleetStore:
    """The identities of one fleet, kept in ``directory/identities.json``."""

    directory: Path
    prefix: str = DEFAULT_PREFIX
    identities: dict[str, Identity] = field(default_factory=dict)
    broker_url: str = "mqtt://localhost:1883"
    """The address written into credentials bundles: where the fleet's clients reach the broker."""

    @property
    def path(self) -> Path:
        return self.directory / STORE_FILE

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @classmethod
    def open(cls, directory: Path, prefix: str | None = None) -> FleetStore:
        """The store in ``directory``; an empty one (with ``prefix``) when there is none yet."""
        path = directory / STORE_FILE
        if not path.exists():
            store = cls(directory, prefix or DEFAULT_PREFIX)
            store.topics  # noqa: B018 - validates the prefix now
            return store
        try:
            data = json.loads(path.read_text())
            if data.get("version") != STORE_VERSION:
                raise FleetError(f"{path}: unsupported store version {data.get('version')!r}")
            items = [Identity.from_json(item) for item in data["identities"]]
            store = cls(directory, str(data.get("prefix", DEFAULT_PREFIX)), {i.name: i for i in items})
            store.broker_url = str(data.get("broker_url", store.broker_url))
        except (OSError, ValueError, KeyError, TypeError, ContractError) as exc:
            if isinstance(exc, FleetError):
                raise
            raise FleetError(f"{path}: not a readable identity store: {exc}") from None
        if prefix is not None and prefix != store.prefix:
            raise FleetError(f"{path}: the fleet's topic prefix is {store.prefix!r}, not {prefix!r}")
        return store

    def save(self) -> None:
        data = {
            "version": STORE_VERSION,
            "prefix": self.prefix,
            "broker_url": self.broker_url,
            "identities": [i.to_json() for i in sorted(self.identities.values(), key=lambda i: i.name)],
        }
        write_atomic(self.path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)

    def add(
        self, name: str, role: Role = Role.CAR, groups: tuple[str, ...] = (), broker_url: str | None = None
    ) -> tuple[Identity, str]:
        """Add an identity with a new random password; returns it and the password (kept nowhere here)."""
        try:
            check_car_id(name)
            groups = tuple(dict.fromkeys(check_group_id(g) for g in groups))
        except ContractError as exc:
            raise FleetError(str(exc).replace("car id", "name")) from None
        if name in self.identities:
            existing = self.identities[name]
            raise FleetError(f"{name!r} already exists (a {existing.role}); remove it first")
        if groups and role is not Role.CAR:
            raise FleetError(f"only cars belong to groups, not a {role}")
        password = generate_password()
        identity = Identity(name, role, hash_password(password), groups, time.time(), broker_url)
        self.identities[name] = identity
        return identity, password

    def remove(self, name: str) -> Identity:
        try:
            return self.identities.pop(name)
        except KeyError:
            raise FleetError(f"no identity named {name!r}") from None

    def authenticate(self, username: str | None, password: str | None) -> Identity | None:
        """The identity these credentials prove, or None."""
        identity = self.identities.get(username or "")
        if identity is None or password is None:
            return None
        return identity if verify_password(password, identity.password_hash) else None
