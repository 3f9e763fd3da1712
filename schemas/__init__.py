"""The wire and storage contracts shared by every part of paddock.

Nothing here imports anything else of paddock: cars, the hub and trainers all speak through these
types. See ``docs/wire.md`` for the topic tree and the envelope.
"""

from schemas.errors import ContractError

__version__ = "0.1.0"
WIRE_VERSION = "v1"

__all__ = ["WIRE_VERSION", "ContractError", "__version__"]
