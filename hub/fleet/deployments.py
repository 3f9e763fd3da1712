"""Model deployments: signed, retained model envelopes on a car's or a group's model topic.

Each action on a target (deploy, rollback, clear) is a row in the catalog; the target's current
model is found by replaying them as a stack: deploy pushes, clear pushes "nothing", rollback pops.
So a rollback after a clear brings the cleared model back, and two rollbacks go two models back.

The envelope carries the model inline up to ``inline_max_bytes``; a larger model travels as a
manifest whose ``url`` points at this hub's download route. Either way the manifest (url included)
is signed with the hub's Ed25519 key over its exact bytes, so a car verifies it before it downloads
or loads anything. Each signed manifest names its target, the target's next sequence number (kept
in the catalog) and an expiry ``envelope_ttl_s`` ahead; :meth:`Deployer.refresh_expiring` signs
the current model of a target again before its envelope expires, so a car that boots late still
gets a valid one.

A car has two model slots, each with its own retained topics and its own history here: the pilot
(``cars/{car}/model``, ``groups/{group}/model``) and the detector (``cars/{car}/detector``,
``groups/{group}/detector``). A model goes to the slot its card names: a card of ``kind:
classifier`` is a detector, any other a pilot. Rollback and clear act on one slot and never touch
the other. Both slots of a target draw on its one sequence (a car keeps the last it accepted per
slot, so each slot still sees its numbers rise); each slot's envelope expires and is refreshed on
its own.
"""

import hashlib
import hmac
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.storage.catalog import Catalog, Conflict
from infra.keys import load_or_create_private_key
from infra.store import ObjectStore
from schemas.errors import ContractError
from schemas.ids import check_car_id, check_group_id
from schemas.model_card import ModelCard, ModelManifest, ModelTarget
from schemas.payloads import encode_model
from schemas.signing import key_id, public_key_pem
from schemas.topics import Topics

log = logging.getLogger(__name__)

TargetKind = Literal["car", "group"]
Slot = Literal["pilot", "detector"]
SLOTS: tuple[Slot, ...] = ("pilot", "detector")
SignedAction = Literal["deploy", "rollback", "refresh"]
DEFAULT_TTL_S = 7 * 86400.0


class NotFound(KeyError):
    pass


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The hub's key, created on first use with mode 0600; a key readable by others is tightened."""
    key = load_or_create_private_key(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("signing key %s had mode %o; setting 0600", path, mode)
        os.chmod(path, 0o600)
    return key


@dataclass(frozen=True, slots=True)
class Current:
    name: str
    version: str


def _stack(history: list[dict[str, Any]]) -> list[Current | None]:
    stack: list[Current | None] = []
    for row in history:
        action = row["action"]
        if action == "deploy":
            m = Current(row["model_name"], row["model_version"])
            if not stack or stack[-1] != m:
                stack.append(m)
        elif action == "clear":
            if stack and stack[-1] is not None:
                stack.append(None)
        elif action == "rollback" and len(stack) >= 2:
            stack.pop()
    return stack


def current_from_history(history: list[dict[str, Any]]) -> Current | None:
    stack = _stack(history)
    return stack[-1] if stack else None


def rollback_target(history: list[dict[str, Any]]) -> Current | Literal[False] | None:
    """What a rollback would restore: a model, None (nothing assigned), or False (nothing to roll back)."""
    stack = _stack(history)
    return stack[-2] if len(stack) >= 2 else False


def slot_of_card(card: dict[str, Any]) -> Slot:
    """The model slot a registered model's card deploys into."""
    return "detector" if card.get("kind") == "classifier" else "pilot"


def download_grant(secret: str, name: str, version: str) -> str:
    """The capability in a model's download URL: a car fetches that one artifact without a token."""
    return hmac.new(secret.encode(), f"download:{name}:{version}".encode(), hashlib.sha256).hexdigest()[:32]


class Deployer:
    def __init__(
        self,
        catalog: Catalog,
        store: ObjectStore,
        topics: Topics,
        key: Ed25519PrivateKey,
        publish: Any,
        *,
        inline_max_bytes: int,
        public_url: Any,
        grant_secret: str = "",
        envelope_ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.topics = topics
        self.key = key
        self.key_id = key_id(key.public_key())
        self.public_key_pem = public_key_pem(key.public_key()).decode()
        self._publish = publish  # (topic, payload, qos=, retain=) -> bool
        self.inline_max_bytes = inline_max_bytes
        self._public_url = public_url  # () -> str
        self._grant_secret = grant_secret  # signs download URLs (the API checks them)
        self.envelope_ttl_s = envelope_ttl_s
        self._lock = threading.Lock()

    @staticmethod
    def check_target(kind: str, target: str) -> None:
        if kind == "car":
            check_car_id(target)
        elif kind == "group":
            check_group_id(target)
        else:
            raise ContractError(f"target kind must be 'car' or 'group', not {kind!r}")

    @staticmethod
    def check_slot(slot: str) -> None:
        if slot not in SLOTS:
            raise ContractError(f"model slot must be 'pilot' or 'detector', not {slot!r}")

    def topic(self, kind: str, target: str, slot: str = "pilot") -> str:
        if slot == "detector":
            return self.topics.car_detector(target) if kind == "car" else self.topics.group_detector(target)
        return self.topics.car_model(target) if kind == "car" else self.topics.group_model(target)

    def slot_of(self, name: str, version: str) -> Slot:
        """The slot model ``name:version`` deploys into, from its card."""
        row = self.catalog.get_model(name, version)
        if row is None:
            raise NotFound(f"model {name}:{version}")
        return slot_of_card(row["card"])

    def manifest(
        self, name: str, version: str, kind: str, target: str, action: SignedAction = "deploy"
    ) -> tuple[ModelManifest, bytes]:
        """The manifest for ``kind`` ``target`` (its sequence taken) and the payload to publish
        (empty when the model goes by URL)."""
        row = self.catalog.get_model(name, version)
        if row is None:
            raise NotFound(f"model {name}:{version}")
        inline = row["size"] <= self.inline_max_bytes
        grant = download_grant(self._grant_secret, name, version)
        url = None if inline else f"{self._public_url()}/models/{name}/{version}/artifact?grant={grant}"
        manifest = ModelManifest(
            name=name,
            version=version,
            sha256=row["sha256"],
            size=row["size"],
            format=row["format"],
            card=ModelCard.from_dict(row["card"]),
            created=row["created"],
            url=url,
            target=ModelTarget(kind=kind, id=target),
            action=action,
            key_id=self.key_id,
        )
        payload = self.store.get(row["artifact_key"]) if inline else b""
        expires = time.time() + self.envelope_ttl_s
        sequence = self.catalog.next_model_sequence(kind, target, expires, slot_of_card(row["card"]))
        return manifest.model_copy(update={"sequence": sequence, "expires": expires}), payload

    def envelope(
        self, name: str, version: str, kind: str, target: str, action: SignedAction = "deploy"
    ) -> tuple[bytes, ModelManifest]:
        """A signed envelope of model ``name:version`` for one target, with its next sequence."""
        manifest, payload = self.manifest(name, version, kind, target, action)
        return encode_model(manifest, payload, self.key), manifest

    def deploy(
        self, kind: str, target: str, name: str, version: str, requested_by: str | None = None
    ) -> dict[str, Any]:
        self.check_target(kind, target)
        with self._lock:
            slot = self.slot_of(name, version)
            envelope, manifest = self.envelope(name, version, kind, target)
            row_id = self.catalog.add_deployment(
                {
                    "target_kind": kind,
                    "target": target,
                    "slot": slot,
                    "action": "deploy",
                    "model_name": name,
                    "model_version": version,
                    "sha256": manifest.sha256,
                    "inline": manifest.url is None,
                    "requested_by": requested_by,
                }
            )
            published = self._publish(self.topic(kind, target, slot), envelope, qos=1, retain=True)
            self.catalog.set_deployment_published(row_id, published)
        return self.status(kind, target, slot) | {"published": published}

    def rollback(
        self, kind: str, target: str, requested_by: str | None = None, slot: str = "pilot"
    ) -> dict[str, Any]:
        self.check_target(kind, target)
        self.check_slot(slot)
        with self._lock:
            history = self.catalog.deployment_history(kind, target, slot)
            restore = rollback_target(history)
            if restore is False:
                raise Conflict(f"the {slot} of {kind} {target} has no earlier deployment to roll back to")
            if restore is None:
                payload, sha, inline = b"", None, None
            else:
                envelope, manifest = self.envelope(restore.name, restore.version, kind, target, "rollback")
                payload, sha, inline = envelope, manifest.sha256, manifest.url is None
            row_id = self.catalog.add_deployment(
                {
                    "target_kind": kind,
                    "target": target,
                    "slot": slot,
                    "action": "rollback",
                    "model_name": restore.name if restore else None,
                    "model_version": restore.version if restore else None,
                    "sha256": sha,
                    "inline": inline,
                    "requested_by": requested_by,
                }
            )
            published = self._publish(self.topic(kind, target, slot), payload, qos=1, retain=True)
            self.catalog.set_deployment_published(row_id, published)
        return self.status(kind, target, slot) | {"published": published}

    def clear(
        self, kind: str, target: str, requested_by: str | None = None, slot: str = "pilot"
    ) -> dict[str, Any]:
        """Remove the retained model message of a target's slot (an empty retained publish)."""
        self.check_target(kind, target)
        self.check_slot(slot)
        with self._lock:
            if not self.catalog.deployment_history(kind, target, slot):
                raise NotFound(f"{kind} {target} has no {slot} deployment")
            row_id = self.catalog.add_deployment(
                {
                    "target_kind": kind,
                    "target": target,
                    "slot": slot,
                    "action": "clear",
                    "requested_by": requested_by,
                }
            )
            published = self._publish(self.topic(kind, target, slot), b"", qos=1, retain=True)
            self.catalog.set_deployment_published(row_id, published)
        return self.status(kind, target, slot) | {"published": published}

    def status(self, kind: str, target: str, slot: str = "pilot") -> dict[str, Any]:
        history = self.catalog.deployment_history(kind, target, slot)
        current = current_from_history(history)
        last = history[-1] if history else None
        return {
            "target_kind": kind,
            "target": target,
            "slot": slot,
            "topic": self.topic(kind, target, slot),
            "current": {"name": current.name, "version": current.version} if current else None,
            "last_action": last["action"] if last else None,
            "updated": last["created"] if last else None,
            "can_roll_back": rollback_target(history) is not False,
        }

    def all_status(self) -> list[dict[str, Any]]:
        return [self.status(kind, target, slot) for kind, target, slot in self.catalog.deployment_slots()]

    def republish_all(self) -> int:
        """Publish every target's current state again (retained, signed anew); returns how many."""
        with self._lock:
            slots = self.catalog.deployment_slots()
            return sum(self._republish(kind, target, slot) for kind, target, slot in slots)

    def refresh_expiring(self, now: float | None = None) -> int:
        """Sign again the current model of every target's slot whose envelope is past half its lifetime."""
        now = time.time() if now is None else now
        expiries = self.catalog.model_expiries()
        sent = 0
        with self._lock:
            for kind, target, slot in self.catalog.deployment_slots():
                expires = expiries.get((kind, target, slot))
                if expires is not None and expires - now < self.envelope_ttl_s / 2:
                    sent += self._republish(kind, target, slot)
        return sent

    def _republish(self, kind: str, target: str, slot: str) -> bool:
        current = current_from_history(self.catalog.deployment_history(kind, target, slot))
        try:
            payload = (
                self.envelope(current.name, current.version, kind, target, "refresh")[0] if current else b""
            )
        except (NotFound, KeyError) as exc:
            log.error("cannot republish the %s of %s %s: %s", slot, kind, target, exc)
            return False
        return bool(self._publish(self.topic(kind, target, slot), payload, qos=1, retain=True))
