"""Which model envelopes a car trusts (docs/car.md, "Which models a car accepts").

A signed envelope is accepted only when all of these hold, each refused with its own reason and
code (published in ``model_rejected``):

* ``unknown_key``: its key id is one of the car's trusted keys (several while a key is rotated);
* ``bad_signature``: the signature verifies over the manifest bytes exactly as they travelled;
* ``unbound``: the manifest names a target, a sequence and an expiry (hubs before these existed
  did not);
* ``wrong_target``: the target is this car (on its own model topic) or its group (on the group's);
* ``expired``: its expiry has not passed (give or take ``models.clock_skew_s``);
* ``replayed``: its sequence is above the last one accepted for that target, or it is that very
  envelope again. The last sequences are kept on disk, so a restart does not reopen old envelopes.

A rollback is no exception: the hub signs it anew, with a higher sequence.
"""

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from infra.files import write_atomic
from schemas.errors import ContractError
from schemas.model_card import ModelManifest, ModelTarget
from schemas.signing import KeyRing, SignatureError, UnknownKey, is_signed_header, verify_header

log = logging.getLogger(__name__)

Source = Literal["car", "group"]
MAX_TARGETS = 16  # the car's own topic and its groups over time; older ones are forgotten first


class TrustError(Exception):
    """An envelope the car must not load; ``reason`` is for people, ``code`` for the hub."""

    def __init__(self, reason: str, code: str, manifest: ModelManifest | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.manifest = manifest


@dataclass(frozen=True, slots=True)
class Trusted:
    """A verified manifest and what accepting it records."""

    manifest: ModelManifest
    unsigned: bool
    target_key: str | None = None
    digest: str | None = None


class SequenceStore:
    """The last sequence (and envelope digest) accepted per target, in one small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("%s unreadable (%s): replay protection restarts from nothing", self.path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            k: v
            for k, v in data.items()
            if isinstance(v, dict) and isinstance(v.get("sequence"), int) and isinstance(v.get("digest"), str)
        }

    def last(self, target_key: str) -> tuple[int, str] | None:
        entry = self._entries.get(target_key)
        return (entry["sequence"], entry["digest"]) if entry else None

    def accept(self, target_key: str, sequence: int, digest: str) -> None:
        self._entries.pop(target_key, None)
        self._entries[target_key] = {"sequence": sequence, "digest": digest, "ts": time.time()}
        while len(self._entries) > MAX_TARGETS:
            self._entries.pop(next(iter(self._entries)))
        write_atomic(self.path, json.dumps(self._entries, indent=1).encode(), mode=0o600)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class TrustPolicy:
    """The car's rules for model envelopes (module docstring)."""

    keys: KeyRing
    car: str
    group: str | None = None
    allow_unsigned: bool = False
    sequences: SequenceStore | None = None
    clock_skew_s: float = 300.0
    clock: Callable[[], float] = field(default=time.time)

    def target(self, source: Source) -> ModelTarget | None:
        if source == "car":
            return ModelTarget(kind="car", id=self.car)
        return ModelTarget(kind="group", id=self.group) if self.group else None

    def verify(self, header: dict[str, Any], source: Source) -> Trusted:
        """Check an arriving envelope's header; raise :class:`TrustError` with the reason."""
        if not is_signed_header(header):
            return Trusted(self._unsigned(header), unsigned=True)
        manifest, body = self._signed(header)
        expected = self.target(source)
        if manifest.target is None or manifest.sequence is None or manifest.expires is None:
            raise TrustError(
                f"model {manifest.ref} names no target, sequence or expiry (signed by an older hub?)",
                "unbound",
                manifest,
            )
        if manifest.target != expected:
            mine = f"{expected.kind} {expected.id}" if expected else f"{source} (none)"
            raise TrustError(
                f"model {manifest.ref} is signed for {manifest.target.kind} {manifest.target.id}, "
                f"not for this car's {mine}",
                "wrong_target",
                manifest,
            )
        now = self.clock()
        if manifest.expires + self.clock_skew_s < now:
            raise TrustError(
                f"model {manifest.ref} expired at {_when(manifest.expires)} "
                f"({now - manifest.expires:.0f} s ago); the hub re-signs current models before they expire",
                "expired",
                manifest,
            )
        key = f"{expected.kind}:{expected.id}"
        digest = hashlib.sha256(body).hexdigest()
        self._check_sequence(manifest, key, digest)
        return Trusted(manifest, unsigned=False, target_key=key, digest=digest)

    def _check_sequence(self, manifest: ModelManifest, key: str, digest: str) -> None:
        last = self.sequences.last(key) if self.sequences else None
        if last is None:
            return
        sequence, last_digest = last
        assert manifest.sequence is not None
        if manifest.sequence > sequence or (manifest.sequence == sequence and digest == last_digest):
            return
        raise TrustError(
            f"model {manifest.ref} has sequence {manifest.sequence} for {key.replace(':', ' ')}, "
            f"not above the last accepted {sequence}: a replayed or out-of-date envelope",
            "replayed",
            manifest,
        )

    def accept(self, trusted: Trusted) -> None:
        """Remember an accepted envelope's sequence (on disk) so it and older ones are not replayed."""
        if self.sequences is None or trusted.target_key is None or trusted.digest is None:
            return
        assert trusted.manifest.sequence is not None
        last = self.sequences.last(trusted.target_key)
        if last is None or trusted.manifest.sequence > last[0]:
            self.sequences.accept(trusted.target_key, trusted.manifest.sequence, trusted.digest)

    def verify_cached(self, header: dict[str, Any]) -> ModelManifest:
        """A cached model's header: its signature only (a car must boot and drive offline)."""
        if not is_signed_header(header):
            return self._unsigned(header)
        return self._signed(header)[0]

    def _signed(self, header: dict[str, Any]) -> tuple[ModelManifest, bytes]:
        try:
            return verify_header(header, self.keys)
        except UnknownKey as exc:
            raise TrustError(str(exc), "unknown_key") from None
        except SignatureError as exc:
            raise TrustError(str(exc), "bad_signature") from None
        except ContractError as exc:
            raise TrustError(f"signed model manifest is invalid: {exc}", "invalid") from None

    def _unsigned(self, header: dict[str, Any]) -> ModelManifest:
        try:
            manifest = ModelManifest.from_dict(header)
        except ContractError as exc:
            raise TrustError(str(exc), "invalid") from None
        if "signature" in header:
            raise TrustError(
                f"model {manifest.ref} is signed the old way (a signature inside the manifest); "
                "this car needs a hub that signs the manifest's exact bytes",
                "unsigned",
                manifest,
            )
        if not self.allow_unsigned:
            raise TrustError(f"model {manifest.ref} is not signed", "unsigned", manifest)
        return manifest
