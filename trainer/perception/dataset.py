"""Captured sessions as small labelled images, split by session.

Frames come from the object store in the hub's layout (WebDataset shards listed by each session's
manifest, read with :func:`schemas.shards.read_shard`); each keeps its JPEG decoded and resized
to the network's input (60×80 by default: small enough to train in minutes on two CPU cores) and
its labels from the record's ``labels`` (``obstacle_ahead``, ``surface_ahead``). A frame without
labels, or whose JPEG does not decode, is counted and left out, never a crash. A frame whose
obstacle label is ambiguous (``ahead_ambiguous``: an obstacle just outside the corridor ahead, or
one in it that the camera hardly shows; :mod:`firmware.sim.labels`) keeps its surface label and
gets no obstacle label (-1: left out of the loss and the metrics), counted as ``obstacle_ambiguous``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from infra.store import NoSuchKey, ObjectStore
from schemas.dataset import SessionManifest, session_manifest_key, session_prefix
from schemas.errors import ContractError
from schemas.messages import SessionRef
from schemas.shards import ReadStats, ShardError, read_shard
from trainer.data import decode_jpeg, list_sessions
from trainer.perception import TASKS

INPUT_HEIGHT, INPUT_WIDTH = 60, 80


@dataclass
class PerceptionTable:
    """Frames in memory: ``images`` N×H×W×3 uint8 RGB, one label array per task (class index, -1
    when missing), the session of each frame, and each frame's record."""

    images: NDArray[np.uint8]
    labels: dict[str, NDArray[np.int64]]
    sessions: list[str]  # "car/session" of each frame
    seqs: NDArray[np.int64]
    records: list[dict[str, Any]] = field(repr=False)
    skipped: dict[str, int] = field(default_factory=dict)
    raw_stats: dict[str, Any] = field(default_factory=dict)  # per-frame image statistics (validation)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, mask: NDArray[np.bool_]) -> PerceptionTable:
        idx = np.flatnonzero(mask)
        return PerceptionTable(
            images=self.images[idx],
            labels={k: v[idx] for k, v in self.labels.items()},
            sessions=[self.sessions[i] for i in idx],
            seqs=self.seqs[idx],
            records=[self.records[i] for i in idx],
            skipped=dict(self.skipped),
            raw_stats={k: v[idx] for k, v in self.raw_stats.items()},
        )

    def session_names(self) -> list[str]:
        return list(dict.fromkeys(self.sessions))


def _labels(record: dict[str, Any]) -> dict[str, str | None] | None:
    """The record's class per task; ``None`` for an ambiguous obstacle label."""
    labels = record.get("labels")
    if not isinstance(labels, dict):
        return None
    obstacle, surface = labels.get("obstacle_ahead"), labels.get("surface_ahead")
    if not isinstance(obstacle, str) or not isinstance(surface, str):
        return None
    return {"obstacle": None if labels.get("ahead_ambiguous") is True else obstacle, "surface": surface}


def _frame_stats(rgb: NDArray[np.uint8]) -> tuple[float, float, float]:
    """Sharpness (variance of the Laplacian), mean brightness and the fraction of clipped pixels,
    on the full-size frame (the validation's blur and exposure checks)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    sharp = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    clipped = float(((gray <= 5) | (gray >= 250)).mean())
    return sharp, float(gray.mean()), clipped


def load_table(
    store: ObjectStore,
    sessions: Sequence[SessionRef] | None = None,
    *,
    size: tuple[int, int] = (INPUT_HEIGHT, INPUT_WIDTH),
    on_session: Callable[[str], None] | None = None,
) -> PerceptionTable:
    """Read ``sessions`` (every session in the store by default) into memory."""
    refs = list(sessions) if sessions is not None else list_sessions(store)
    h, w = size
    images: list[NDArray[np.uint8]] = []
    labels: dict[str, list[int]] = {task: [] for task in TASKS}
    names: list[str] = []
    seqs: list[int] = []
    records: list[dict[str, Any]] = []
    stats: list[tuple[float, float, float]] = []
    skipped = {"unreadable": 0, "unlabelled": 0, "unknown_class": 0, "missing_shards": 0}
    ambiguous = 0
    for ref in refs:
        for sample in _session_samples(store, ref, skipped):
            rgb = decode_jpeg(sample.jpeg)
            if rgb is None:
                skipped["unreadable"] += 1
                continue
            found = _labels(sample.record)
            if found is None:
                skipped["unlabelled"] += 1
                continue
            if any(found[t] is not None and found[t] not in TASKS[t] for t in TASKS):
                skipped["unknown_class"] += 1
                continue
            ambiguous += found["obstacle"] is None
            stats.append(_frame_stats(rgb))
            images.append(np.asarray(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA), np.uint8))
            for task, classes in TASKS.items():
                value = found[task]
                labels[task].append(classes.index(value) if value is not None else -1)
            names.append(f"{ref.car}/{ref.session}")
            seqs.append(sample.seq)
            records.append(sample.record)
        if on_session is not None:
            on_session(f"{ref.car}/{ref.session}")
    arr = np.asarray(stats, dtype=np.float64).reshape(-1, 3)
    return PerceptionTable(
        images=np.asarray(images, dtype=np.uint8).reshape(-1, h, w, 3),
        labels={t: np.asarray(v, dtype=np.int64) for t, v in labels.items()},
        sessions=names,
        seqs=np.asarray(seqs, dtype=np.int64),
        records=records,
        skipped=skipped | {"obstacle_ambiguous": ambiguous},
        raw_stats={"sharpness": arr[:, 0], "brightness": arr[:, 1], "clipped": arr[:, 2]},
    )


def _session_samples(store: ObjectStore, ref: SessionRef, skipped: dict[str, int]) -> Any:
    prefix = session_prefix(ref.car, ref.session)
    try:
        manifest = SessionManifest.model_validate_json(store.get(session_manifest_key(ref.car, ref.session)))
        names = [s.name for s in manifest.shards]
    except (NoSuchKey, ContractError, ValueError):
        names = sorted(k.rsplit("/", 1)[-1] for k in store.list(prefix) if k.endswith(".tar"))
    for name in names:
        try:
            data = store.get(prefix + name)
        except NoSuchKey:
            skipped["missing_shards"] += 1
            continue
        stats = ReadStats()
        try:
            yield from read_shard(io.BytesIO(data), stats)
        except ShardError:
            skipped["missing_shards"] += 1
        skipped["unreadable"] += stats.skipped


def split_by_session(
    table: PerceptionTable, val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, PerceptionTable]:
    """Train / val / test by session (never by frame), reproducibly for a seed: a session's
    frames all land in one split. With three or more sessions each split gets at least one."""
    names = table.session_names()
    if len(names) < 3:
        raise ValueError(f"need at least 3 sessions to split train/val/test by session, got {len(names)}")
    ranked = sorted(names, key=lambda n: hashlib.sha256(f"{seed}/{n}".encode()).hexdigest())
    n_test = max(1, round(len(ranked) * test_fraction))
    n_val = max(1, round(len(ranked) * val_fraction))
    n_test = min(n_test, len(ranked) - 2)
    n_val = min(n_val, len(ranked) - n_test - 1)
    groups = {
        "test": ranked[:n_test],
        "val": ranked[n_test : n_test + n_val],
        "train": ranked[n_test + n_val :],
    }
    where = np.asarray(table.sessions)
    return {split: table.subset(np.isin(where, members)) for split, members in groups.items()}
