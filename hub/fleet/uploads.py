"""Sessions uploaded as a tar (what ``GET /sessions/{car}/{session}/export`` streams, and what
``paddock data import-tub|import-lerobot --hub`` sends): checked frame by frame, written to the
store and entered in the catalog as a sealed session, listed and trained on like a recorded one.

The tar holds ``datasets/{car}/{session}/manifest.json`` first, then that session's shards in
order, and may end with its ``lidar.csv``. Nothing in it is trusted: member names must be exactly
those keys, every frame must be a valid frame record of that car and session, seqs must rise
across shards, and the catalog row, shard list and stats are rebuilt from the frames, not taken
from the uploaded manifest. The scans are rebuilt from the frames too where the frames carry them
(a recorded session); a captured session's ``lidar.csv`` is checked row by row against its frames.
"""

import io
import re
import tarfile
import time
from typing import IO, Any

from pydantic import ValidationError

from hub.storage import lidar
from hub.storage.catalog import Catalog, Conflict
from hub.storage.sealer import SessionState, StatsAccumulator
from infra.store import ObjectStore
from schemas.dataset import LIDAR_FILE, SessionManifest, lidar_key, session_manifest_key, shard_key
from schemas.messages import FrameRecord
from schemas.shards import ReadStats, Sample, read_shard

SHARD_RE = re.compile(r"^shard-(\d{6})\.tar$")
MAX_MEMBERS = 100_000


class UploadRejected(ValueError):
    """An uploaded session tar that is not a valid session (the client's mistake: 422)."""


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise UploadRejected(f"{member.name}: not a regular file")
    return handle.read()


def _manifest(tar: tarfile.TarFile) -> SessionManifest:
    member = tar.next()
    if member is None or not member.isfile() or not member.name.endswith("/manifest.json"):
        raise UploadRejected("the tar must start with datasets/{car}/{session}/manifest.json")
    try:
        manifest = SessionManifest.from_json(_member_bytes(tar, member))
    except (ValidationError, ValueError) as exc:
        raise UploadRejected(f"{member.name}: not a session manifest: {exc}") from None
    if member.name != session_manifest_key(manifest.car, manifest.session):
        raise UploadRejected(f"{member.name}: does not match the manifest's car and session")
    return manifest


def _check_frames(samples: list[Sample], manifest: SessionManifest, last_seq: int | None, name: str) -> None:
    for sample in samples:
        try:
            record = FrameRecord.model_validate(sample.record)
        except ValidationError as exc:
            raise UploadRejected(f"{name}: frame {sample.seq} is not a frame record: {exc}") from None
        if (record.car, record.session, record.seq) != (manifest.car, manifest.session, sample.seq):
            raise UploadRejected(f"{name}: frame {sample.seq} belongs to {record.car}/{record.session}")
        if last_seq is not None and sample.seq <= last_seq:
            raise UploadRejected(f"{name}: frame {sample.seq} does not follow frame {last_seq}")
        last_seq = sample.seq


def adopt_session_tar(fileobj: IO[bytes], store: ObjectStore, catalog: Catalog) -> dict[str, Any]:
    """Check an uploaded session tar, write its shards and manifest, enter it in the catalog and
    return the catalog row. Raises :class:`UploadRejected` or :class:`Conflict` (session exists);
    on either, nothing of it stays in the store."""
    written: list[str] = []
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            manifest = _manifest(tar)
            if catalog.get_session(manifest.car, manifest.session) is not None:
                raise Conflict(f"session {manifest.car}/{manifest.session} exists; delete it first")
            state, scans = _write_shards(tar, manifest, store, written)
        if scans is not None:
            store.put(lidar_key(manifest.car, manifest.session), scans)
            written.append(lidar_key(manifest.car, manifest.session))
    except tarfile.TarError as exc:
        _remove(store, written)
        raise UploadRejected(f"not a readable tar: {exc}") from None
    except BaseException:
        _remove(store, written)
        raise
    store.put(session_manifest_key(state.car, state.session), state.manifest().to_json())
    row = state.to_row()
    catalog.save_session(row)
    return row


def _write_shards(
    tar: tarfile.TarFile, manifest: SessionManifest, store: ObjectStore, written: list[str]
) -> tuple[SessionState, bytes | None]:
    """Check and write the shards; return the session's state and its lidar.csv (None: no scans)."""
    now = time.time()
    state = SessionState(manifest.car, manifest.session, created=now, updated=now, state="sealed")
    state.acc = StatsAccumulator()
    prefix = session_manifest_key(manifest.car, manifest.session).removesuffix("manifest.json")
    count = 0
    scans: list[list[str]] = []  # the lidar.csv rows of the scans the frames carry
    uploaded: bytes | None = None
    seqs: set[int] = set()
    while (member := tar.next()) is not None:  # after the manifest (iterating would replay it)
        count += 1
        if member.name == prefix + LIDAR_FILE and member.isfile() and uploaded is None:
            uploaded = _member_bytes(tar, member)
            continue
        match = SHARD_RE.match(member.name.removeprefix(prefix))
        if count > MAX_MEMBERS or not member.isfile() or not member.name.startswith(prefix) or not match:
            raise UploadRejected(f"{member.name}: not a shard of {manifest.car}/{manifest.session}")
        index = int(match.group(1))
        if index != state.next_shard:
            raise UploadRejected(f"{member.name}: expected shard {state.next_shard} next")
        data = _member_bytes(tar, member)
        stats = ReadStats()
        samples = list(read_shard(io.BytesIO(data), stats))
        if stats.skipped or not samples:
            reasons = "; ".join(stats.reasons[:3]) or "no frames"
            raise UploadRejected(f"{member.name}: unreadable frames ({reasons})")
        _check_frames(samples, manifest, state.sealed.last, member.name)
        seqs.update(sample.seq for sample in samples)
        scans += lidar.scan_rows(samples)
        key = shard_key(manifest.car, manifest.session, index)
        store.put(key, data)
        written.append(key)
        state.add_shard(member.name.removeprefix(prefix), samples, data)
        state.received = state.sealed.copy()
    if not state.shards:
        raise UploadRejected(f"{manifest.car}/{manifest.session}: no shards")
    if scans:  # the shards came in seq order, and so did their scans
        return state, lidar.rows_csv(scans)
    try:
        return state, None if uploaded is None else lidar.checked_csv(uploaded, seqs)
    except ValueError as exc:
        raise UploadRejected(f"{manifest.car}/{manifest.session}: {exc}") from None


def _remove(store: ObjectStore, keys: list[str]) -> None:
    for key in keys:
        try:
            store.delete(key)
        except Exception:  # best effort: the upload failed already
            pass
