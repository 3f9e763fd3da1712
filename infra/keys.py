"""The hub's signing key on disk: created once, mode 0600, written atomically."""

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infra.files import write_atomic
from schemas.signing import generate_private_key, load_private_key, private_key_pem


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write a PEM private key atomically with mode 0600."""
    write_atomic(path, private_key_pem(key), mode=0o600)


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """Load the key at ``path``, creating it (mode 0600) on first use."""
    if path.exists():
        return load_private_key(path)
    key = generate_private_key()
    save_private_key(key, path)
    return key
