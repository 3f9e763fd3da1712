"""Mosquitto's password file and ACL file, written from the identity store.

Mosquitto reads both at start and again on SIGHUP (``docker compose kill -s HUP mosquitto``), so a
car added or removed takes effect without dropping the other clients.
"""

from pathlib import Path

from deploy.fleet.acl import rules
from deploy.fleet.identities import FleetStore
from infra.files import write_atomic

PASSWORD_FILE = "mosquitto/passwd"
ACL_FILE = "mosquitto/acl"


def password_file(store: FleetStore) -> str:
    lines = [f"{i.name}:{i.password_hash}" for i in sorted(store.identities.values(), key=lambda i: i.name)]
    return "".join(f"{line}\n" for line in lines)


def acl_file(store: FleetStore) -> str:
    """One ``user`` block per identity; a user without a block (or no user at all) gets nothing."""
    out = [
        "# Written by `paddock fleet`; edit the fleet with that command, not this file.\n",
        "# Each identity may use exactly the topics below; everything else is refused.\n",
    ]
    for identity in sorted(store.identities.values(), key=lambda i: (i.role, i.name)):
        r = rules(identity, store.topics)
        out.append(f"\n# {identity.role}\nuser {identity.name}\n")
        out += [f"topic write {f}\n" for f in r.publish]
        out += [f"topic read {f}\n" for f in r.subscribe]
    return "".join(out)


def write_broker_files(store: FleetStore) -> tuple[Path, Path]:
    """Write both files into the store's directory; returns (password file, ACL file)."""
    pw, acl = store.directory / PASSWORD_FILE, store.directory / ACL_FILE
    write_atomic(pw, password_file(store).encode(), mode=0o600)
    write_atomic(acl, acl_file(store).encode(), mode=0o644)
    return pw, acl
