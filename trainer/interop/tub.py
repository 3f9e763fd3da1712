"""DonkeyCar tubs (v2) in and out of paddock's sessions (ARCHITECTURE §6 layout).

A tub v2 directory, as DonkeyCar 4.x/5.x writes it (``donkeycar/parts/datastore_v2.py``)::

    manifest.json            five JSON lines: inputs, types, metadata, manifest metadata
                             (created_at, sessions), catalog metadata (paths, current_index,
                             max_len, deleted_indexes)
    catalog_0.catalog        one JSON record a line: {"_index", "_session_id", "_timestamp_ms",
                             "cam/image_array": "0_cam_image_array_.jpg", "user/angle", ...}
    catalog_0.catalog_manifest   {"created_at", "line_lengths", "path", "start_index"}
    images/0_cam_image_array_.jpg

Import reads the catalogs without DonkeyCar (it pins numpy below 2), skips the records the
manifest marks deleted, and writes one paddock session per DonkeyCar session id (``_session_id``)
as sealed WebDataset shards and a manifest; the JPEG bytes are copied, not re-encoded. The frame's
seq is the tub's ``_index``, so a frame can be traced back to its record. Steering and throttle are
what drove the car: ``user/*`` in user mode, ``pilot/*`` (when recorded) in DonkeyCar's
``local_angle`` (pilot steering, user throttle) and ``local`` modes.

Export writes sessions as a tub DonkeyCar's own ``Tub`` reads (tests/trainer/test_tub.py checks
with DonkeyCar 5.3 itself): ``cam/image_array``, ``user/angle``, ``user/throttle``, ``user/mode``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.store import NoSuchKey, ObjectStore
from schemas.dataset import (
    SessionManifest,
    SessionStats,
    ShardInfo,
    session_manifest_key,
    shard_key,
    shard_name,
)
from schemas.shards import ReadStats, Sample, read_shard, write_shard

IMAGE_KEY = "cam/image_array"
CATALOG_LEN = 1000  # DonkeyCar's default records per catalog file
SHARD_FRAMES = 500  # about 2-4 MB of 160×120 JPEGs per shard
TUB_INPUTS = [IMAGE_KEY, "user/angle", "user/throttle", "user/mode"]
TUB_TYPES = ["image_array", "float", "float", "str"]


class TubError(ValueError):
    """A directory that is not a readable tub v2, or a session that cannot be exported."""


@dataclass
class TubRecord:
    index: int
    session: str
    timestamp_ms: int
    values: dict[str, Any]


@dataclass
class ImportReport:
    """What one tub became: sessions written, frames per session, and what was skipped and why."""

    sessions: dict[str, int] = field(default_factory=dict)
    deleted: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.reasons) < 50:
            self.reasons.append(reason)


# --- reading a tub -------------------------------------------------------------------------------
def _json_lines(path: Path) -> list[Any]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise TubError(f"{path}: missing (is {path.parent} a DonkeyCar tub v2?)") from None
    except ValueError as exc:
        raise TubError(f"{path}: not JSON lines: {exc}") from None


def read_tub_manifest(tub: Path) -> dict[str, Any]:
    lines = _json_lines(tub / "manifest.json")
    if len(lines) < 5 or not isinstance(lines[4], dict) or "paths" not in lines[4]:
        raise TubError(f"{tub}/manifest.json: expected DonkeyCar's five manifest lines")
    return {
        "inputs": lines[0],
        "types": lines[1],
        "metadata": lines[2],
        "manifest": lines[3],
        "catalog": lines[4],
    }


def iter_tub(tub: Path, report: ImportReport) -> Iterator[TubRecord]:
    """The tub's live records in index order (deleted ones counted in ``report.deleted``)."""
    manifest = read_tub_manifest(tub)
    deleted = {int(i) for i in manifest["catalog"].get("deleted_indexes", [])}
    for name in manifest["catalog"]["paths"]:
        path = tub / name
        for number, line in enumerate(_catalog_lines(path)):
            try:
                record = json.loads(line)
                index = int(record["_index"])
            except (ValueError, KeyError, TypeError):
                report.skip(f"{name}:{number + 1}: not a record")
                continue
            if index in deleted:
                report.deleted += 1
                continue
            yield TubRecord(
                index, str(record.get("_session_id", "0")), int(record.get("_timestamp_ms", 0)), record
            )


def _catalog_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise TubError(f"{path}: catalog named in manifest.json is missing") from None


def _action(values: dict[str, Any]) -> tuple[float, float, str] | None:
    mode = str(values.get("user/mode", "user"))
    steer_key = (
        "pilot/angle" if mode in ("local", "local_angle") and "pilot/angle" in values else "user/angle"
    )
    throttle_key = "pilot/throttle" if mode == "local" and "pilot/throttle" in values else "user/throttle"
    try:
        steering, throttle = float(values[steer_key]), float(values[throttle_key])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(steering) and math.isfinite(throttle)):
        return None
    mode_name = "manual" if mode == "user" else "autopilot"
    return max(-1.0, min(1.0, steering)), max(-1.0, min(1.0, throttle)), mode_name


# --- import --------------------------------------------------------------------------------------
def session_name(tub: Path, donkey_session: str) -> str:
    """A paddock session id for a DonkeyCar session of a tub: ``tub-{dir}-{session}``, sanitised."""
    raw = f"tub-{tub.resolve().name}-{donkey_session}"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", raw)[:64]


def import_tub(
    tub: Path, store: ObjectStore, car: str, on_frame: Callable[[int], None] | None = None
) -> ImportReport:
    """Write the tub's live records into ``store`` as sealed sessions of ``car``."""
    report = ImportReport()
    writers: dict[str, _SessionWriter] = {}
    images = tub / "images"
    for rec in iter_tub(tub, report):
        action = _action(rec.values)
        image_name = rec.values.get(IMAGE_KEY)
        if action is None or not isinstance(image_name, str):
            report.skip(f"record {rec.index}: no steering/throttle or no {IMAGE_KEY}")
            continue
        try:
            jpeg = (images / Path(image_name).name).read_bytes()
        except FileNotFoundError:
            report.skip(f"record {rec.index}: image {image_name} is missing")
            continue
        if not jpeg.startswith(b"\xff\xd8"):
            report.skip(f"record {rec.index}: {image_name} is not a JPEG")
            continue
        session = session_name(tub, rec.session)
        writer = writers.get(session) or writers.setdefault(session, _SessionWriter(store, car, session))
        writer.add(rec, action, jpeg)
        if on_frame:
            on_frame(rec.index)
    for session, writer in writers.items():
        report.sessions[session] = writer.close()
    return report


class _SessionWriter:
    def __init__(self, store: ObjectStore, car: str, session: str) -> None:
        self.store, self.car, self.session = store, car, session
        self.pending: list[Sample] = []
        self.shards: list[ShardInfo] = []
        self.records: list[dict[str, Any]] = []
        self.size: tuple[int, int] | None = None

    def add(self, rec: TubRecord, action: tuple[float, float, str], jpeg: bytes) -> None:
        steering, throttle, mode = action
        if self.size is None:
            self.size = jpeg_size(jpeg)
        extra = {k: v for k, v in rec.values.items() if not k.startswith("_") and k != IMAGE_KEY}
        record = {
            "car": self.car,
            "session": self.session,
            "seq": rec.index,
            "t_capture_ns": max(0, rec.timestamp_ms) * 1_000_000,
            "steering": steering,
            "throttle": throttle,
            "mode": mode,
            "width": self.size[0] if self.size else None,
            "height": self.size[1] if self.size else None,
            "donkeycar": extra | {"session_id": rec.session},
        }
        self.records.append(record)
        self.pending.append(Sample(rec.index, jpeg, record))
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


# --- export --------------------------------------------------------------------------------------
def session_samples(store: ObjectStore, car: str, session: str) -> Iterator[Sample]:
    """The frames of a stored session in seq order, shard by shard."""
    try:
        manifest = SessionManifest.from_json(store.get(session_manifest_key(car, session)))
    except NoSuchKey:
        raise TubError(f"no session {car}/{session} in {store.url}") from None
    for shard in manifest.shards:
        index = int(shard.name[6:-4])
        yield from read_shard(io.BytesIO(store.get(shard_key(car, session, index))), ReadStats())


def export_tub(samples: Iterable[Sample], out: Path, on_frame: Callable[[int], None] | None = None) -> int:
    """Write ``samples`` as a new tub v2 in ``out`` (which must not hold one); return the count."""
    if (out / "manifest.json").exists():
        raise TubError(f"{out} already holds a tub; choose an empty directory")
    (out / "images").mkdir(parents=True, exist_ok=True)
    created = time.time()
    session_id = f"{time.strftime('%y-%m-%d', time.gmtime(created))}_0"  # DonkeyCar's "date_n"
    catalogs: list[str] = []
    lines: list[str] = []
    count = 0

    def close_catalog() -> None:
        name = f"catalog_{len(catalogs)}.catalog"
        text = "".join(lines)
        (out / name).write_text(text)
        meta = {
            "created_at": created,
            "line_lengths": [len(x) for x in lines],
            "path": f"catalog_{len(catalogs)}.catalog_manifest",
            "start_index": len(catalogs) * CATALOG_LEN,
        }
        (out / f"catalog_{len(catalogs)}.catalog_manifest").write_text(
            json.dumps(meta, sort_keys=True) + "\n"
        )
        catalogs.append(name)
        lines.clear()

    for sample in samples:
        rec = sample.record
        label: dict[str, Any] = rec["label"] if isinstance(rec.get("label"), dict) else rec
        image = f"{count}_cam_image_array_.jpg"
        (out / "images" / image).write_bytes(sample.jpeg)
        ts = int(rec.get("t_capture_ns", 0)) // 1_000_000
        record = {
            "_index": count,
            "_session_id": session_id,
            "_timestamp_ms": ts,
            IMAGE_KEY: image,
            "user/angle": float(label.get("steering", 0.0)),
            "user/throttle": float(label.get("throttle", 0.0)),
            "user/mode": "user" if rec.get("mode") == "manual" else "local",
        }
        lines.append(json.dumps(record, allow_nan=False, sort_keys=True) + "\n")
        count += 1
        if len(lines) == CATALOG_LEN:
            close_catalog()
        if on_frame:
            on_frame(count)
    if lines or not catalogs:
        close_catalog()
    manifest = [
        TUB_INPUTS,
        TUB_TYPES,
        {},
        {
            "created_at": created,
            "sessions": {"all_full_ids": [session_id], "last_id": 0, "last_full_id": session_id},
        },
        {"paths": catalogs, "current_index": count, "max_len": CATALOG_LEN, "deleted_indexes": []},
    ]
    (out / "manifest.json").write_text("".join(json.dumps(x) + "\n" for x in manifest))
    return count
