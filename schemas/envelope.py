"""The binary envelope that carries frames and models.

Layout (readable from any language)::

    b"PDK1" | uint32 little-endian header length | header: UTF-8 JSON object | payload bytes

Decoding never trusts a length: a short buffer, a header length beyond the buffer or beyond the
configured maximum, bytes that are not UTF-8, JSON that is not an object — each raises its own
subclass of :class:`EnvelopeError` before anything large is allocated.
"""

import json
import struct
from dataclasses import dataclass
from typing import Any

from schemas.errors import ContractError

MAGIC = b"PDK1"
_LEN = struct.Struct("<I")
PREAMBLE_SIZE = len(MAGIC) + _LEN.size

DEFAULT_MAX_HEADER = 64 * 1024
DEFAULT_MAX_TOTAL = 256 * 1024 * 1024


class EnvelopeError(ContractError):
    """Bytes that are not a valid envelope."""


class BadMagic(EnvelopeError):
    """The buffer does not start with ``PDK1``."""


class Truncated(EnvelopeError):
    """The buffer ends before the preamble or the header it announces."""


class HeaderTooLarge(EnvelopeError):
    """The announced header length exceeds the configured maximum."""


class EnvelopeTooLarge(EnvelopeError):
    """The whole envelope exceeds the configured maximum."""


class HeaderNotUtf8(EnvelopeError):
    """The header bytes are not valid UTF-8."""


class HeaderNotJson(EnvelopeError):
    """The header is not valid (strict) JSON."""


class HeaderNotObject(EnvelopeError):
    """The header is JSON but not an object."""


@dataclass(frozen=True, slots=True)
class Envelope:
    header: dict[str, Any]
    payload: bytes


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """Encode ``header`` (a JSON-serialisable dict) and ``payload`` into one envelope."""
    if not isinstance(header, dict):
        raise EnvelopeError(f"envelope header must be a dict, not {type(header).__name__}")
    try:
        head = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"envelope header is not JSON-serialisable: {exc}") from None
    return b"".join((MAGIC, _LEN.pack(len(head)), head, bytes(payload)))


def decode(
    data: bytes | bytearray | memoryview,
    *,
    max_header: int = DEFAULT_MAX_HEADER,
    max_total: int = DEFAULT_MAX_TOTAL,
) -> Envelope:
    """Decode an envelope, raising a specific :class:`EnvelopeError` on any defect."""
    view = memoryview(data)
    total = view.nbytes
    if total > max_total:
        raise EnvelopeTooLarge(f"envelope of {total} bytes exceeds the maximum of {max_total}")
    if total < len(MAGIC):
        raise Truncated(f"envelope of {total} bytes is shorter than its magic")
    if view[: len(MAGIC)].tobytes() != MAGIC:
        raise BadMagic(f"envelope starts with {view[:4].tobytes()!r}, expected {MAGIC!r}")
    if total < PREAMBLE_SIZE:
        raise Truncated(f"envelope of {total} bytes is shorter than its {PREAMBLE_SIZE}-byte preamble")
    (head_len,) = _LEN.unpack_from(view, len(MAGIC))
    if head_len > max_header:
        raise HeaderTooLarge(f"header length {head_len} exceeds the maximum of {max_header}")
    end = PREAMBLE_SIZE + head_len
    if end > total:
        raise Truncated(f"header length {head_len} runs past the end of a {total}-byte envelope")
    try:
        text = view[PREAMBLE_SIZE:end].tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HeaderNotUtf8(f"header is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        header = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise HeaderNotJson(f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise HeaderNotObject(f"header is a JSON {type(header).__name__}, expected an object")
    return Envelope(header=header, payload=view[end:].tobytes())
