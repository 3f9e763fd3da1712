"""What an HTTPS client of the hub trusts: the fleet's CA when one is named, else the system's.

The hub's API serves HTTPS with a certificate that the fleet's CA signed (``paddock fleet ca``);
the CLI, the trainer agent and its jobs verify it with that CA: ``--ca-file`` or, for every
process alike, ``PADDOCK_CA_FILE`` (the same CA verifies an ``mqtts://`` broker).
"""

import os
import ssl
from pathlib import Path

CA_FILE_ENV = "PADDOCK_CA_FILE"


def https_verify(ca_file: str | Path | None = None) -> ssl.SSLContext | bool:
    """For httpx's ``verify``: a context trusting ``ca_file`` (or ``PADDOCK_CA_FILE``'s), else True
    (the system's CAs). Raises OSError or ssl.SSLError for a CA file it cannot use."""
    path = ca_file or os.environ.get(CA_FILE_ENV) or None
    if path is None:
        return True
    return ssl.create_default_context(cafile=str(path))
