"""Base class for every JSON message on the wire."""

import time
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.errors import ContractError


def now() -> float:
    """Wall-clock time in seconds since the epoch, the ``ts`` of every message."""
    return time.time()


class WireModel(BaseModel):
    """A JSON message. Unknown fields are ignored so newer senders do not break older receivers."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, populate_by_name=True)

    def to_json(self) -> bytes:
        """Serialise to compact UTF-8 JSON, leaving out fields that are ``None``."""
        return self.model_dump_json(exclude_none=True).encode()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_json(cls, data: bytes | bytearray | str) -> Self:
        """Parse and validate, raising :class:`ContractError` with a readable reason."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise ContractError(f"invalid {cls.__name__}: {_summary(exc)}") from None

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ContractError(f"invalid {cls.__name__}: {_summary(exc)}") from None


def _summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
