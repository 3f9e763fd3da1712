"""The feedback dataset: the recorded frames that show where a model failed, labelled with what the
human (or the teacher) did there, DAgger-style.

:meth:`FeedbackCollector.scan` reads every sealed session it has not read yet and keeps:

- after a **human takeover** (a frame in ``manual`` mode right after one in ``autopilot``), the
  next ``feedback_frames`` manual frames, labelled with the human's own action;
- every frame of a session the **car** captured around a moment (edge.feedback: an intervention,
  an off-track moment, a low-confidence output, also when the car was not recording), marked with
  ``feedback_event``; its reason is the car's, and a frame a human drove is labelled with the human's
  action;
- frames a **model** drove where the recorded teacher's ``label`` (the simulator's expert, a safety
  rule) differs from the applied steering by at least ``feedback_min_disagreement``.

The kept frames of a recorded session become a session of their own, ``{session}-feedback`` of the
same car (one shard, a manifest, a catalog row, so the sessions API shows them); a session the car
captured is kept whole, so it is written again in place with the reasons and labels instead of
being copied (its frames are stored once). The ``feedback`` dataset lists them all. Each kept frame
says why in ``feedback`` and carries ``label``, which the trainer prefers to the applied action. The
sessions already read are remembered in the object store.
"""

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hub.config import MlopsConfig
from hub.storage.catalog import Catalog
from hub.storage.sealer import SessionState
from hub.storage.shards import shard_bytes
from infra.store import ObjectStore
from schemas.dataset import (
    DatasetManifest,
    SessionManifest,
    dataset_manifest_key,
    session_manifest_key,
    session_prefix,
    shard_name,
)
from schemas.messages import SessionRef
from schemas.shards import ReadStats, Sample, read_shard

log = logging.getLogger(__name__)

DATASET = "feedback"
SUFFIX = "-feedback"
CAPTURE_PREFIX = "feedback-"  # the car's own captures (edge.feedback.session_name)
SCANNED_KEY = "feedback/scanned.json"
DESCRIPTION = "frames where a model failed, labelled by the human or the teacher (DAgger)"


@dataclass
class Batch:
    """What one scan found: feedback frames per model (``name:version``), and the sessions made."""

    frames: dict[str, int] = field(default_factory=dict)
    sessions: list[SessionRef] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.frames.values())


def pick(samples: Iterator[Sample], cfg: MlopsConfig) -> Iterator[Sample]:
    """The feedback frames of a session's samples (in seq order), labelled, with their reason and
    ``feedback_model``: the model that was driving (for a takeover, the one the human took over from)."""
    previous_mode, failed, after_takeover = None, None, 0
    for s in samples:
        r = s.record
        mode, model = r.get("mode"), r.get("model") or ""
        if previous_mode == "autopilot" and mode == "manual":
            after_takeover = cfg.feedback_frames
        previous_mode = mode
        if mode != "manual":
            after_takeover = 0
        if mode == "autopilot":
            failed = model
        if r.get("feedback_event"):
            yield car_marked(s, failed)
            continue
        if after_takeover > 0:
            after_takeover -= 1
            label = {"steering": r["steering"], "throttle": r["throttle"]}
            why = {"label": label, "feedback": "human takeover", "feedback_model": failed}
            yield Sample(s.seq, s.jpeg, r | why)
            continue
        teacher = r.get("label")
        if mode == "autopilot" and ":" in model and isinstance(teacher, dict):
            gap = abs(float(teacher.get("steering", 0.0)) - float(r.get("steering", 0.0)))
            if gap >= cfg.feedback_min_disagreement:
                why = {"feedback": f"teacher disagreed by {gap:.2f}", "feedback_model": model}
                yield Sample(s.seq, s.jpeg, r | why)


def captured_by_car(samples: list[Sample], kept: list[Sample]) -> bool:
    """A session the car captured around a moment (``feedback-…``), every frame of it kept."""
    whole = bool(samples) and len(kept) == len(samples)
    return whole and all(s.record.get("feedback_event") for s in samples)


def car_marked(s: Sample, failed: str | None) -> Sample:
    """A frame the car kept around a moment, with the car's reason; a human's action is its label."""
    r = s.record
    why: dict[str, Any] = {
        "feedback": f"car: {r['feedback_event']}: {r.get('feedback_reason') or ''}".rstrip(": "),
        "feedback_model": failed or r.get("model") or None,
    }
    if r.get("mode") == "manual":
        why["label"] = {"steering": r["steering"], "throttle": r["throttle"]}
    return Sample(s.seq, s.jpeg, r | why)


class FeedbackCollector:
    def __init__(self, config: MlopsConfig, catalog: Catalog, store: ObjectStore) -> None:
        self.config = config
        self.catalog = catalog
        self.store = store
        self._lock = threading.Lock()
        self._scanned: set[str] = set()
        if store.exists(SCANNED_KEY):
            self._scanned = set(json.loads(store.get(SCANNED_KEY)))

    def scan(self) -> Batch:
        """Read the sealed sessions not read yet; make their feedback sessions and the dataset."""
        batch = Batch()
        with self._lock:
            for row in self.catalog.all_sessions():
                key = f"{row['car']}/{row['session']}"
                if row["state"] != "sealed" or key in self._scanned or row["session"].endswith(SUFFIX):
                    continue
                try:
                    self._collect(row["car"], row["session"], batch)
                except Exception as exc:  # a session deleted or unreadable meanwhile: not retried
                    log.warning("feedback: cannot read session %s: %s", key, exc)
                self._scanned.add(key)
            if batch.sessions:
                self._add_to_dataset(batch.sessions)
            self.store.put(SCANNED_KEY, json.dumps(sorted(self._scanned)).encode())
        if batch.total:
            log.warning(
                "feedback: %d frames from %d sessions %s", batch.total, len(batch.sessions), batch.frames
            )
        return batch

    def _collect(self, car: str, session: str, batch: Batch) -> None:
        manifest = SessionManifest.from_json(self.store.get(session_manifest_key(car, session)))
        if session.startswith(CAPTURE_PREFIX):  # small: read whole to see whether the car kept it all
            samples = list(self._samples(manifest))
            kept = list(pick(iter(samples), self.config))
        else:
            samples, kept = [], list(pick(self._samples(manifest), self.config))
        if not kept:
            return
        for s in kept:
            model = str(s.record.get("feedback_model") or "unknown")
            batch.frames[model] = batch.frames.get(model, 0) + 1
        if captured_by_car(samples, kept):
            self._annotate(car, manifest, kept)
            name = session
        else:
            name = f"{session}{SUFFIX}"[:64]
            self._write_session(car, name, kept)
        batch.sessions.append(SessionRef(car=car, session=name))

    def _annotate(self, car: str, manifest: SessionManifest, kept: list[Sample]) -> None:
        """Write the car's own capture again, under the same keys, with each frame's reason and
        label: its frames are stored once, and the feedback dataset lists the session itself."""
        session = manifest.session
        row = self.catalog.get_session(car, session)
        old = SessionState.from_row(row) if row else None
        created = old.created if old else manifest.created
        state = SessionState(car=car, session=session, created=created, updated=time.time(), state="sealed")
        if old is not None:
            state.trimmed = old.trimmed
        by_seq = {s.seq: s for s in kept}
        for info in manifest.shards:
            part = [by_seq[q] for q in sorted(by_seq) if info.seq_first <= q <= info.seq_last]
            data = shard_bytes(part)
            self.store.put(session_prefix(car, session) + info.name, data)
            state.add_shard(info.name, part, data)
        state.next_shard = max(state.next_shard, old.next_shard if old else 0)
        self.catalog.save_session(state.to_row())
        self.store.put(session_manifest_key(car, session), state.manifest().to_json())

    def _samples(self, manifest: SessionManifest) -> Iterator[Sample]:
        prefix = session_prefix(manifest.car, manifest.session)
        for info in manifest.shards:
            with self.store.open(prefix + info.name) as fh:
                yield from read_shard(fh, ReadStats())

    def _write_session(self, car: str, session: str, samples: list[Sample]) -> None:
        data = shard_bytes(samples)
        self.store.put(session_prefix(car, session) + shard_name(0), data)
        now = time.time()
        state = SessionState(car=car, session=session, created=now, updated=now, state="sealed")
        state.add_shard(shard_name(0), samples, data)
        self.catalog.save_session(state.to_row())
        self.store.put(session_manifest_key(car, session), state.manifest().to_json())

    def _add_to_dataset(self, sessions: list[SessionRef]) -> None:
        old = self.catalog.get_dataset(DATASET)
        manifest = DatasetManifest.from_dict(old or self.dataset())
        known = {(s.car, s.session) for s in manifest.train}
        manifest.train.extend(s for s in sessions if (s.car, s.session) not in known)
        self.save_dataset(manifest)

    def save_dataset(self, manifest: DatasetManifest) -> None:
        """Create or replace a dataset in the catalog and the store."""
        if self.catalog.get_dataset(manifest.name) is not None:
            self.catalog.delete_dataset(manifest.name)
        self.catalog.create_dataset(manifest.name, manifest.to_dict())
        self.store.put(dataset_manifest_key(manifest.name), manifest.to_json())

    def dataset(self) -> dict[str, Any]:
        """The feedback dataset's manifest (empty before the first feedback frame)."""
        return (
            self.catalog.get_dataset(DATASET)
            or DatasetManifest(name=DATASET, description=DESCRIPTION).to_dict()
        )

    def training_set(self, base: str) -> str:
        """A dataset of ``base``'s sessions and every feedback session (``{base}-with-feedback``)."""
        old = self.catalog.get_dataset(base)
        fb = self.catalog.get_dataset(DATASET)
        if old is None or fb is None:
            return base
        b, f = DatasetManifest.from_dict(old), DatasetManifest.from_dict(fb)
        name = f"{base}-with-feedback"[:64]
        merged = DatasetManifest(
            name=name, train=[*b.train, *f.train], val=b.val, description=f"{base} and the feedback dataset"
        )
        self.save_dataset(merged)
        return name
