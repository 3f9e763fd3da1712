"""Mosquitto's password hashes: ``$7$`` is PBKDF2-HMAC-SHA512, as ``mosquitto_passwd`` writes them.

A line of Mosquitto's password file is ``user:$7$<iterations>$<base64 salt>$<base64 hash>`` with a
12-byte salt and a 64-byte hash. The passwords paddock generates are 24 random bytes, so stretching
adds nothing against guessing; the iteration count stays modest because the embedded broker checks
a hash on its event loop at every connect.
"""

import base64
import hashlib
import hmac
import secrets

ITERATIONS = 1000
_SALT_BYTES = 12
_HASH_BYTES = 64


def generate_password() -> str:
    """A new random password (24 bytes, URL-safe: fits in a broker URL without escaping)."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _HASH_BYTES)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches a ``$7$`` hash; False for a wrong password or a malformed hash."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    if not 1 <= iterations <= 10_000_000 or not expected:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(digest, expected)
