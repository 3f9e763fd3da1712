"""Paddock sessions written from, and read for, other tools' formats (ARCHITECTURE §6 layout).

Every importer (DonkeyCar tubs, LeRobot datasets) turns its records into frames of a
:class:`SessionWriter`, which writes sealed WebDataset shards and the session's manifest, exactly
as the hub's sealer lays out a recorded session, so the trainers and the hub read them alike.
Every exporter reads a session with :func:`session_samples`.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from infra.store import NoSuchKey, ObjectStore
from schemas.dataset import (
    SessionManifest,
    SessionStats,
    ShardInfo,
    session_manifest_key,
    session_prefix,
    shard_key,
    shard_name,
)
from schemas.shards import ReadStats, Sample, read_shard, write_shard

SHARD_FRAMES = 500  # about 2-4 MB of 160×120 JPEGs per shard


class InteropError(ValueError):
    """Input that is not the format it claims to be, or a session that cannot be exported."""


@dataclass
class ImportReport:
    """What one import became: sessions written, frames per session, and what was skipped and why."""

    sessions: dict[str, int] = field(default_factory=dict)
    deleted: int = 0
    skipped: int = 0
    clipped: int = 0
    reasons: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.reasons) < 50:
            self.reasons.append(reason)


def safe_session_id(raw: str) -> str:
    """A valid session id from any text: characters outside ``[A-Za-z0-9_.-]`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", raw)[:64].lstrip(".") or "session"


class SessionWriter:
    """Frames in, a sealed session out: shards of :data:`SHARD_FRAMES` and a manifest."""

    def __init__(self, store: ObjectStore, car: str, session: str) -> None:
        self.store, self.car, self.session = store, car, session
        self.pending: list[Sample] = []
        self.shards: list[ShardInfo] = []
        self.records: list[dict[str, Any]] = []
        self.size: tuple[int, int] | None = None

    def add(
        self,
        seq: int,
        t_capture_ns: int,
        action: tuple[float, float, str],
        jpeg: bytes,
        extra: dict[str, Any],
    ) -> None:
        """One frame: its seq, capture time, (steering, throttle, mode), JPEG and extra fields."""
        steering, throttle, mode = action
        if self.size is None:
            self.size = jpeg_size(jpeg)
        record = {
            "car": self.car,
            "session": self.session,
            "seq": seq,
            "t_capture_ns": max(0, t_capture_ns),
            "steering": steering,
            "throttle": throttle,
            "mode": mode,
            "width": self.size[0] if self.size else None,
            "height": self.size[1] if self.size else None,
        } | extra
        self.records.append(record)
        self.pending.append(Sample(seq, jpeg, record))
        if len(self.pending) >= SHARD_FRAMES:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        buf = io.BytesIO()
        write_shard(buf, self.pending)
        data = buf.getvalue()
        index = len(self.shards)
        self.store.put(shard_key(self.car, self.session, index), data)
        self.shards.append(
            ShardInfo(
                name=shard_name(index),
                frames=len(self.pending),
                bytes=len(data),
                seq_first=self.pending[0].seq,
                seq_last=self.pending[-1].seq,
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
        self.pending = []

    def close(self) -> int:
        """Write the last shard and the sealed manifest; return the session's frame count."""
        self._flush()
        times = [r["t_capture_ns"] for r in self.records]
        manifest = SessionManifest(
            car=self.car,
            session=self.session,
            frame_count=len(self.records),
            seq_first=self.records[0]["seq"],
            seq_last=self.records[-1]["seq"],
            shards=self.shards,
            stats=_stats(self.records, (max(times) - min(times)) / 1e9, self.size),
            state="sealed",
        )
        self.store.put(session_manifest_key(self.car, self.session), manifest.to_json())
        return len(self.records)


def _stats(records: list[dict[str, Any]], duration_s: float, size: tuple[int, int] | None) -> SessionStats:
    def mean_std(name: str) -> tuple[float, float]:
        values = [float(r[name]) for r in records]
        mean = sum(values) / len(values)
        return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))

    s_mean, s_std = mean_std("steering")
    t_mean, t_std = mean_std("throttle")
    return SessionStats(
        steering_mean=s_mean,
        steering_std=s_std,
        throttle_mean=t_mean,
        throttle_std=t_std,
        duration_s=max(0.0, duration_s),
        width=size[0] if size else None,
        height=size[1] if size else None,
    )


def jpeg_size(jpeg: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame marker, without decoding it."""
    i = 2
    while i + 9 < len(jpeg):
        if jpeg[i] != 0xFF:
            return None
        marker, length = jpeg[i + 1], int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(jpeg[i + 7 : i + 9], "big"), int.from_bytes(jpeg[i + 5 : i + 7], "big")
        i += 2 + length
    return None


def session_manifest(store: ObjectStore, car: str, session: str) -> SessionManifest:
    try:
        return SessionManifest.from_json(store.get(session_manifest_key(car, session)))
    except NoSuchKey:
        raise InteropError(f"no session {car}/{session} in {store.url}") from None


def session_samples(store: ObjectStore, car: str, session: str) -> Iterator[Sample]:
    """The frames of a stored session in seq order, shard by shard."""
    manifest = session_manifest(store, car, session)
    for shard in manifest.shards:
        index = int(shard.name[6:-4])
        yield from read_shard(io.BytesIO(store.get(shard_key(car, session, index))), ReadStats())


def frame_action(record: dict[str, Any]) -> tuple[float, float]:
    """What a learner should learn from a frame: the teacher's label when recorded, else what the
    car did (as :func:`trainer.data.load_frames` reads it)."""
    label: dict[str, Any] = record["label"] if isinstance(record.get("label"), dict) else record
    return float(label.get("steering", 0.0)), float(label.get("throttle", 0.0))


def write_session_tar(store: ObjectStore, car: str, session: str, fileobj: IO[bytes]) -> int:
    """Write a stored session as the tar the hub's export makes and its upload takes (manifest
    first, then the shards in order, under ``datasets/{car}/{session}/``); return its frames."""
    manifest = session_manifest(store, car, session)
    prefix = session_prefix(car, session)
    keys = [session_manifest_key(car, session)] + [prefix + shard.name for shard in manifest.shards]
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key in keys:
            data = manifest.to_json() if key == keys[0] else store.get(key)
            info = tarfile.TarInfo(key)
            info.size = len(data)
            info.mtime = int(manifest.updated)
            tar.addfile(info, io.BytesIO(data))
    return manifest.frame_count
