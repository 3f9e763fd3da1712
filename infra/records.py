"""The spool record: the one on-disk framing of the car's forward spool (``edge.spool``) and the hub's
write-ahead spool (``hub.storage.spool``).

A record is ``b"R1" | uint32 LE length | uint32 LE crc32(body) | body``. The magic and the length
bound let a reader tell a torn tail (a killed writer's last, partial write) from a record before it
reads the body; the crc catches a tail whose header made it to disk but whose body did not. A spool
stops at the first record that fails any check: everything after it was never acknowledged.
"""

import struct
import zlib
from collections.abc import Iterator
from typing import NamedTuple

MAGIC = b"R1"
HEADER = struct.Struct("<2sII")
MAX_RECORD = 256 * 1024 * 1024


class Header(NamedTuple):
    length: int
    crc: int


def header(body: bytes) -> bytes:
    """The header that goes in front of ``body``."""
    return HEADER.pack(MAGIC, len(body), zlib.crc32(body))


def encode(body: bytes) -> bytes:
    """``body`` framed as one record."""
    return header(body) + body


def size(body_length: int) -> int:
    """Bytes a record with a body of ``body_length`` takes on disk."""
    return HEADER.size + body_length


def parse_header(data: bytes | memoryview, pos: int = 0) -> Header | None:
    """The header at ``pos``, or ``None`` when it is short, has the wrong magic or an impossible length."""
    if pos + HEADER.size > len(data):
        return None
    magic, length, crc = HEADER.unpack_from(data, pos)
    if magic != MAGIC or length > MAX_RECORD:
        return None
    return Header(length, crc)


def intact(body: bytes | memoryview, head: Header) -> bool:
    """Whether ``body`` is the one ``head`` was written for."""
    return len(body) == head.length and zlib.crc32(body) == head.crc


def scan(data: bytes | memoryview, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """``(offset, end, body)`` of each whole, intact record from ``start``; stops at the first that is
    not (the caller cuts the tail at the last ``end``)."""
    pos = start
    while (head := parse_header(data, pos)) is not None:
        end = pos + HEADER.size + head.length
        body = bytes(data[pos + HEADER.size : end])
        if end > len(data) or not intact(body, head):
            return
        yield pos, end, body
        pos = end
