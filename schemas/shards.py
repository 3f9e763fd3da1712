"""WebDataset shards: the on-disk form of recorded frames (``{seq:09d}.jpg`` + ``{seq:09d}.json``).

The hub writes shards and the trainer reads them; both use this module so the layout cannot drift.
Reading is defensive: a member that is truncated, unreadable or unpaired is counted and skipped,
never a crash; a shard that is not a tar at all raises :class:`ShardError`.
"""

import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from schemas.dataset import sample_key
from schemas.errors import ContractError


class ShardError(ContractError):
    """A shard that cannot be read at all."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One recorded frame: its seq, JPEG bytes and frame record (as a dict)."""

    seq: int
    jpeg: bytes
    record: dict[str, Any]


@dataclass
class ReadStats:
    samples: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.reasons) < 100:
            self.reasons.append(reason)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # deterministic shards: same frames, same bytes
    tar.addfile(info, io.BytesIO(data))


def write_shard(fileobj: IO[bytes], samples: Iterable[Sample]) -> int:
    """Write ``samples`` (in the given order) as one uncompressed tar; return the sample count."""
    n = 0
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            key = sample_key(s.seq)
            _add(tar, f"{key}.json", json.dumps(s.record, separators=(",", ":"), allow_nan=False).encode())
            _add(tar, f"{key}.jpg", s.jpeg)
            n += 1
    return n


def read_shard(fileobj: IO[bytes], stats: ReadStats | None = None) -> Iterator[Sample]:
    """Yield the complete samples of a shard in order, counting in ``stats`` what had to be skipped."""
    stats = stats if stats is not None else ReadStats()
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r|")  # noqa: SIM115 (closed in the finally below)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ShardError(f"not a readable shard: {exc}") from None
    pending: dict[str, dict[str, bytes]] = {}
    try:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.rpartition(".")
            if ext not in ("jpg", "json") or not key.isdigit():
                stats.skip(f"unexpected member {member.name!r}")
                continue
            fh = tar.extractfile(member)
            data = fh.read() if fh else b""
            if len(data) != member.size:
                stats.skip(f"{member.name}: truncated")
                continue
            parts = pending.setdefault(key, {})
            parts[ext] = data
            if len(parts) == 2:
                del pending[key]
                sample = _sample(key, parts, stats)
                if sample is not None:
                    stats.samples += 1
                    yield sample
    except (tarfile.TarError, OSError, EOFError) as exc:
        stats.skip(f"shard ends early: {exc}")
    finally:
        tar.close()
    for key in pending:
        stats.skip(f"{key}: unpaired sample")


def _sample(key: str, parts: dict[str, bytes], stats: ReadStats) -> Sample | None:
    try:
        record = json.loads(parts["json"])
    except (ValueError, UnicodeDecodeError):
        stats.skip(f"{key}.json: not JSON")
        return None
    if not isinstance(record, dict):
        stats.skip(f"{key}.json: not an object")
        return None
    jpeg = parts["jpg"]
    if not jpeg.startswith(b"\xff\xd8"):
        stats.skip(f"{key}.jpg: not a JPEG")
        return None
    return Sample(seq=int(key), jpeg=jpeg, record=record)
