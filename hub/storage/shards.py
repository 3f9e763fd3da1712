"""A fast writer for WebDataset shards, byte for byte what ``schemas.shards.write_shard`` writes.

``tarfile`` spends most of a shard's time building headers in Python (about 80 µs a frame); the
hub seals thousands of frames a second. Headers here are a template made once by ``tarfile``
itself (so they follow this Python's tarfile exactly) with only name, size and checksum filled in
per member. ``tests/hub/test_shardwriter.py`` checks the bytes against ``write_shard``; readers
(the trainer) keep using ``schemas.shards.read_shard``.
"""

import io
import json
import tarfile
from collections.abc import Iterable

from schemas.dataset import sample_key
from schemas.shards import Sample, write_shard

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE


def _template() -> bytes:
    info = tarfile.TarInfo("")
    info.size = 0
    info.mode = 0o644
    info.mtime = 0
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


_TEMPLATE = _template()
assert len(_TEMPLATE) == _BLOCK
# The checksum is the sum of the header's bytes with its own field as spaces: precompute the part
# that never changes (everything but name and size).
_FIXED_SUM = sum(_TEMPLATE[100:124]) + sum(_TEMPLATE[136:148]) + 8 * 32 + sum(_TEMPLATE[156:])
_MIDDLE = _TEMPLATE[100:124]
_TAIL = _TEMPLATE[156:]


def _header(name: bytes, size: int) -> bytes:
    size_field = b"%011o\0" % size
    chksum = _FIXED_SUM + sum(name) + sum(size_field)
    return b"".join(
        (name.ljust(100, b"\0"), _MIDDLE, size_field, _TEMPLATE[136:148], b"%06o\0 " % chksum, _TAIL)
    )


def shard_bytes(samples: Iterable[Sample]) -> bytes:
    """The shard of ``samples`` (in the given order) as one uncompressed tar."""
    parts: list[bytes] = []
    offset = 0
    for s in samples:
        key = sample_key(s.seq).encode()
        if len(key) > 90:  # never for real seqs; keep tarfile's long-name handling for anything else
            buf = io.BytesIO()
            write_shard(buf, samples)
            return buf.getvalue()
        record = json.dumps(s.record, separators=(",", ":"), allow_nan=False).encode()
        for name, data in ((key + b".json", record), (key + b".jpg", s.jpeg)):
            parts.append(_header(name, len(data)))
            parts.append(data)
            pad = -len(data) % _BLOCK
            if pad:
                parts.append(b"\0" * pad)
            offset += _BLOCK + len(data) + pad
    end = b"\0" * (2 * _BLOCK)
    offset += len(end)
    parts.append(end)
    tail = -offset % _RECORD
    if tail:
        parts.append(b"\0" * tail)
    return b"".join(parts)
