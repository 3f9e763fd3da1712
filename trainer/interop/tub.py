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

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.store import ObjectStore
from schemas.shards import Sample
from trainer.interop.sessions import (
    ImportReport,
    InteropError,
    SessionWriter,
    frame_action,
    jpeg_size,
    safe_session_id,
    session_samples,
)

__all__ = ["ImportReport", "TubError", "export_tub", "import_tub", "jpeg_size", "session_samples"]

IMAGE_KEY = "cam/image_array"
CATALOG_LEN = 1000  # DonkeyCar's default records per catalog file
TUB_INPUTS = [IMAGE_KEY, "user/angle", "user/throttle", "user/mode"]
TUB_TYPES = ["image_array", "float", "float", "str"]


class TubError(InteropError):
    """A directory that is not a readable tub v2, or a session that cannot be exported."""


@dataclass
class TubRecord:
    index: int
    session: str
    timestamp_ms: int
    values: dict[str, Any]


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
    return safe_session_id(f"tub-{tub.resolve().name}-{donkey_session}")


def import_tub(
    tub: Path, store: ObjectStore, car: str, on_frame: Callable[[int], None] | None = None
) -> ImportReport:
    """Write the tub's live records into ``store`` as sealed sessions of ``car``."""
    report = ImportReport()
    writers: dict[str, SessionWriter] = {}
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
        writer = writers.get(session) or writers.setdefault(session, SessionWriter(store, car, session))
        extra = {k: v for k, v in rec.values.items() if not k.startswith("_") and k != IMAGE_KEY}
        extra["session_id"] = rec.session
        writer.add(rec.index, rec.timestamp_ms * 1_000_000, action, jpeg, {"donkeycar": extra})
        if on_frame:
            on_frame(rec.index)
    for session, writer in writers.items():
        report.sessions[session] = writer.close()
    return report


# --- export --------------------------------------------------------------------------------------
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
        steering, throttle = frame_action(rec)
        image = f"{count}_cam_image_array_.jpg"
        (out / "images" / image).write_bytes(sample.jpeg)
        ts = int(rec.get("t_capture_ns", 0)) // 1_000_000
        record = {
            "_index": count,
            "_session_id": session_id,
            "_timestamp_ms": ts,
            IMAGE_KEY: image,
            "user/angle": steering,
            "user/throttle": throttle,
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
