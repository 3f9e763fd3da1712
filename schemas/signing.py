"""Ed25519 signing of model manifests.

The hub holds the private key and signs :meth:`ModelManifest.signing_bytes`; cars hold the public
key and verify before loading anything. Keys are stored as PEM (PKCS#8 private, SubjectPublicKeyInfo
public); the private key file is created with mode 0600.
"""

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.errors import ContractError
from schemas.model_card import ModelManifest


class SignatureError(ContractError):
    """A manifest is unsigned, signed with another key, or altered after signing."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key (first 16 hex digits of the SHA-256 of its raw bytes)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_manifest(manifest: ModelManifest, private_key: Ed25519PrivateKey) -> ModelManifest:
    """Return a copy of ``manifest`` carrying its key id and signature."""
    unsigned = manifest.model_copy(update={"key_id": key_id(private_key.public_key()), "signature": None})
    signature = private_key.sign(unsigned.signing_bytes())
    return unsigned.model_copy(update={"signature": base64.b64encode(signature).decode()})


def verify_manifest(manifest: ModelManifest, public_key: Ed25519PublicKey) -> None:
    """Raise :class:`SignatureError` unless ``manifest`` was signed by ``public_key`` unchanged."""
    if not manifest.signature:
        raise SignatureError(f"model {manifest.ref} is not signed")
    try:
        signature = base64.b64decode(manifest.signature, validate=True)
    except ValueError:
        raise SignatureError(f"model {manifest.ref} has a malformed signature") from None
    try:
        public_key.verify(signature, manifest.signing_bytes())
    except InvalidSignature:
        raise SignatureError(
            f"model {manifest.ref} signature does not verify (key {manifest.key_id or '?'}, "
            f"expected {key_id(public_key)})"
        ) from None


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


def load_public_key(data: bytes | Path) -> Ed25519PublicKey:
    """Load a PEM public key from bytes or a file."""
    pem = data.read_bytes() if isinstance(data, Path) else data
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ContractError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ContractError("the public key is not Ed25519")
    return key
