"""How paddock's clients verify TLS servers (and prove who they are): one place for every client.

The fleet's CA (``paddock fleet ca``) signs the broker's and the hub API's certificates and each
identity's client certificate. The car, the hub and the trainer build their ``mqtts://`` context
here; the CLI, the trainer agent and its jobs verify an ``https://`` hub with the CA given as
``--ca-file`` or, for every process alike, ``PADDOCK_CA_FILE``.
"""

import os
import ssl
from pathlib import Path

CA_FILE_ENV = "PADDOCK_CA_FILE"


def require_key_pair(cert_file: str | Path | None, key_file: str | Path | None) -> None:
    """A config's client or server certificate comes with its key: both or neither (ValueError)."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file go together: set both or neither")


def client_context(
    ca_file: str | Path | None = None, cert_file: str | Path | None = None, key_file: str | Path | None = None
) -> ssl.SSLContext:
    """A client context that trusts ``ca_file`` (else the system's CAs), verifies the server's
    name and, with ``cert_file`` and its ``key_file``, presents that client certificate. Raises
    OSError or ssl.SSLError for a file it cannot use."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


def fleet_ca(ca_file: str | Path | None = None) -> str | Path | None:
    """The CA file a client trusts: ``ca_file``, else ``PADDOCK_CA_FILE``'s, else None (the system's)."""
    return ca_file or os.environ.get(CA_FILE_ENV) or None


def https_verify(ca_file: str | Path | None = None) -> ssl.SSLContext | bool:
    """For httpx's ``verify``: a context trusting ``ca_file`` (or ``PADDOCK_CA_FILE``'s), else True
    (the system's CAs). Raises OSError or ssl.SSLError for a CA file it cannot use."""
    path = fleet_ca(ca_file)
    if path is None:
        return True
    return client_context(path)
