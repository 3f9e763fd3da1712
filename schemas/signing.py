"""Ed25519 signing of model manifests over the exact bytes that travel.

A signed model envelope's header is a :class:`SignedHeader`::

    {"manifest": base64(manifest JSON bytes), "key_id": "…", "signature": base64(Ed25519(manifest bytes))}

The signature covers the manifest bytes exactly as the hub wrote them, never a re-serialisation, so
a field a newer hub adds is signed like any other and ignored by an older car's parser. The
manifest names its key id, target, per-target sequence and expiry (:class:`ModelManifest`); what a
car does with them lives in the car (``edge.trust``).

Keys are PEM (PKCS#8 private, SubjectPublicKeyInfo public); the private key file is created with
mode 0600 (``infra.keys``). A car trusts a :class:`KeyRing` of public keys, by key id, so a key can be
rotated: trust old and new, switch the hub, then drop the old one.
"""

import base64
import binascii
import hashlib
import re
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field

from schemas.base import WireModel
from schemas.errors import ContractError
from schemas.model_card import ModelManifest

MAX_MANIFEST_BYTES = 48 * 1024  # a header is at most 64 KiB (schemas.envelope); base64 grows by 4/3


class SignatureError(ContractError):
    """A model header that is unsigned, signed by an unknown key, or altered after signing."""


class UnknownKey(SignatureError):
    """Signed with a key id the car does not trust."""


class SignedHeader(WireModel):
    """The header of a signed model envelope (the manifest travels as the exact bytes signed)."""

    manifest: str = Field(max_length=MAX_MANIFEST_BYTES * 4 // 3 + 4, description="base64 manifest JSON")
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="which trusted key verifies it")
    signature: str = Field(max_length=128, description="base64 Ed25519 signature of the manifest bytes")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key (first 16 hex digits of the SHA-256 of its raw bytes)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class KeyRing:
    """The public keys a car trusts, by key id."""

    def __init__(self, keys: list[Ed25519PublicKey] | None = None) -> None:
        self.keys: dict[str, Ed25519PublicKey] = {key_id(k): k for k in keys or []}

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def ids(self) -> list[str]:
        return sorted(self.keys)

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self.keys.get(kid)


def is_signed_header(header: dict[str, Any]) -> bool:
    """True for a :class:`SignedHeader`, False for a bare (unsigned) manifest."""
    return "manifest" in header and "signature" in header


def sign_manifest(manifest: ModelManifest, private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """The signed header for ``manifest``: its key id is set, then its exact JSON bytes are signed."""
    kid = key_id(private_key.public_key())
    body = manifest.model_copy(update={"key_id": kid}).to_json()
    if len(body) > MAX_MANIFEST_BYTES:
        raise ContractError(f"manifest of {manifest.ref} is {len(body)} bytes, over {MAX_MANIFEST_BYTES}")
    return SignedHeader(
        manifest=base64.b64encode(body).decode(),
        key_id=kid,
        signature=base64.b64encode(private_key.sign(body)).decode(),
    ).to_dict()


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise SignatureError(f"the model header's {what} is not base64") from None


def manifest_bytes(header: dict[str, Any]) -> bytes:
    """The manifest bytes a signed header carries (not verified)."""
    return _b64(SignedHeader.from_dict(header).manifest, "manifest")


def verify_header(header: dict[str, Any], keys: KeyRing) -> tuple[ModelManifest, bytes]:
    """Verify a signed header; return its manifest and the exact bytes that were signed.

    Raises :class:`UnknownKey` for a key id outside ``keys`` and :class:`SignatureError` for
    anything else wrong (malformed, altered, a key id inside that differs from the one outside).
    """
    try:
        signed = SignedHeader.from_dict(header)
    except ContractError as exc:
        raise SignatureError(f"malformed signed model header: {exc}") from None
    public = keys.get(signed.key_id)
    if public is None:
        trusted = ", ".join(keys.ids) or "none"
        raise UnknownKey(f"model signed with unknown key {signed.key_id} (trusted: {trusted})")
    body = _b64(signed.manifest, "manifest")
    try:
        public.verify(_b64(signed.signature, "signature"), body)
    except InvalidSignature:
        raise SignatureError(
            f"model signature does not verify with key {signed.key_id}: the manifest was altered "
            "after signing, or the signature belongs to another manifest"
        ) from None
    manifest = ModelManifest.from_json(body)
    if manifest.key_id != signed.key_id:
        raise SignatureError(
            f"model {manifest.ref} names key {manifest.key_id or 'none'} inside but {signed.key_id} outside"
        )
    return manifest, body


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM (``infra.keys`` writes it to a file, mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ContractError(f"{path} is not an Ed25519 private key")
    return key


_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", re.DOTALL)


def load_public_keys(data: bytes | Path) -> list[Ed25519PublicKey]:
    """Every PEM public key in bytes or a file (a file may hold several while a key is rotated)."""
    pem = data.read_bytes() if isinstance(data, Path) else data
    blocks = _PEM_BLOCK.findall(pem)
    if not blocks:
        raise ContractError("not a PEM public key (no BEGIN PUBLIC KEY block)")
    keys = []
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block)
        except ValueError as exc:
            raise ContractError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ContractError("the public key is not Ed25519")
        keys.append(key)
    return keys


def load_public_key(data: bytes | Path) -> Ed25519PublicKey:
    """Load the first PEM public key from bytes or a file."""
    return load_public_keys(data)[0]
