"""Recorded driving as a PyTorch dataset: WebDataset shards from the object store.

The keys: docs/wire.md, "Storage layout".

Loading reads every shard of the chosen sessions once (in parallel threads: S3 latency hides behind
each other), checks each frame (a JPEG that decodes, a finite steering and throttle in [-1, 1]) and
keeps what is good in memory — the JPEG bytes, plus the decoded pixels when they fit the cache budget,
so an epoch does no I/O. A missing shard, a shard that is not a tar, a truncated member, a JPEG that
does not decode or a record without an action is counted in :class:`LoadReport` and skipped; loading
never fails because of one bad frame.

Samples are split into training and validation **by session** (never by frame), preprocessed with the
model card's :func:`schemas.model_card.preprocess` (the car's own function) and augmented only for
training. :class:`EpochSampler` decides the order, per process under distributed training, and the
augmentation seed of every draw, so an epoch is the same for any worker count.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader, Dataset, Sampler

from infra.store import MissingObject, ObjectStore, StoreError
from schemas.dataset import SessionManifest, session_manifest_key, session_prefix, shard_key
from schemas.errors import ContractError
from schemas.messages import SessionRef
from schemas.model_card import InputSpec, preprocess
from schemas.shards import ReadStats, ShardError, read_shard
from trainer.augment import DRAWS, AugmentConfig, PixelSpace, augment_samples

ACTIONS = ("steering", "throttle")
Weighting = Literal["none", "loss", "sampler"]


# --- JPEG ----------------------------------------------------------------------------------------
def decode_jpeg(data: bytes) -> NDArray[np.uint8] | None:
    """Decode JPEG bytes to an RGB uint8 image, or ``None`` if they do not decode."""
    arr = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(arr, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return None
    return np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), dtype=np.uint8)


# --- sessions ------------------------------------------------------------------------------------
def list_sessions(store: ObjectStore) -> list[SessionRef]:
    """Every session in the store that has a manifest or at least one shard, in key order."""
    found: dict[tuple[str, str], None] = {}
    for key in store.list("datasets/"):
        parts = key.split("/")
        if len(parts) == 4 and (parts[3] == "manifest.json" or parts[3].endswith(".tar")):
            found[(parts[1], parts[2])] = None
    refs = []
    for car, session in found:
        try:
            refs.append(SessionRef(car=car, session=session))
        except Exception:  # a folder whose name is not a valid id is not ours
            continue
    return refs


def split_sessions(
    sessions: Sequence[SessionRef], val_fraction: float, seed: int = 0
) -> tuple[list[SessionRef], list[SessionRef]]:
    """Split sessions (never frames) into train and validation, reproducibly for a seed.

    With at least two sessions and ``val_fraction > 0`` at least one session goes to validation and
    at least one stays for training. With one session there is no validation split.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    unique = list(dict.fromkeys((r.car, r.session) for r in sessions))

    def rank(item: tuple[str, str]) -> str:
        return hashlib.sha256(f"{seed}/{item[0]}/{item[1]}".encode()).hexdigest()

    ordered = sorted(unique, key=rank)
    n_val = 0
    if len(ordered) >= 2 and val_fraction > 0:
        n_val = min(len(ordered) - 1, max(1, round(len(ordered) * val_fraction)))
    val = {item for item in ordered[:n_val]}
    train_refs = [SessionRef(car=c, session=s) for c, s in unique if (c, s) not in val]
    val_refs = [SessionRef(car=c, session=s) for c, s in unique if (c, s) in val]
    return train_refs, val_refs


# --- loading -------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What loading found: counts of everything that had to be skipped, and why (first 100 reasons)."""

    sessions: int = 0
    shards: int = 0
    frames: int = 0
    skipped_frames: int = 0
    missing_shards: int = 0
    corrupt_shards: int = 0
    missing_frames: int = 0
    reasons: list[str] = field(default_factory=list)

    def note(self, reason: str) -> None:
        if len(self.reasons) < 100:
            self.reasons.append(reason)

    def merge(self, other: LoadReport) -> None:
        self.sessions += other.sessions
        self.shards += other.shards
        self.frames += other.frames
        self.skipped_frames += other.skipped_frames
        self.missing_shards += other.missing_shards
        self.corrupt_shards += other.corrupt_shards
        self.missing_frames += other.missing_frames
        for r in other.reasons:
            self.note(r)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "shards": self.shards,
            "frames": self.frames,
            "skipped_frames": self.skipped_frames,
            "missing_shards": self.missing_shards,
            "corrupt_shards": self.corrupt_shards,
            "missing_frames": self.missing_frames,
            "reasons": list(self.reasons),
        }

    def summary(self) -> str:
        text = f"{self.frames} frames from {self.shards} shards of {self.sessions} sessions"
        bad = []
        if self.skipped_frames:
            bad.append(f"{self.skipped_frames} corrupt frames skipped")
        if self.corrupt_shards:
            bad.append(f"{self.corrupt_shards} unreadable shards skipped")
        if self.missing_shards:
            bad.append(f"{self.missing_shards} missing shards")
        if self.missing_frames:
            bad.append(f"{self.missing_frames} frames never recorded (gaps)")
        return text + (f" ({'; '.join(bad)})" if bad else "")


@dataclass
class FrameTable:
    """The frames of a set of sessions in memory: JPEGs, actions, and (optionally) decoded pixels."""

    sessions: list[SessionRef]
    jpegs: list[bytes]
    actions: NDArray[np.float32]  # [N, 2]: steering, throttle
    session_index: NDArray[np.int32]  # [N] index into ``sessions``
    seqs: NDArray[np.int64]
    images: list[NDArray[np.uint8]] | None = None
    report: LoadReport = field(default_factory=LoadReport)

    def __len__(self) -> int:
        return len(self.jpegs)

    def image(self, i: int) -> NDArray[np.uint8]:
        if self.images is not None:
            return self.images[i]
        img = decode_jpeg(self.jpegs[i])
        if img is None:  # checked while loading; only a changed table gets here
            raise ValueError(f"frame {i} does not decode")
        return img

    def subset(self, sessions: Sequence[SessionRef]) -> FrameTable:
        wanted = {(r.car, r.session) for r in sessions}
        keep_sessions = [i for i, r in enumerate(self.sessions) if (r.car, r.session) in wanted]
        mask = np.isin(self.session_index, keep_sessions)
        idx = np.flatnonzero(mask)
        remap = {old: new for new, old in enumerate(keep_sessions)}
        return FrameTable(
            sessions=[self.sessions[i] for i in keep_sessions],
            jpegs=[self.jpegs[i] for i in idx],
            actions=self.actions[idx],
            session_index=np.array([remap[int(s)] for s in self.session_index[idx]], dtype=np.int32),
            seqs=self.seqs[idx],
            images=[self.images[i] for i in idx] if self.images is not None else None,
            report=self.report,
        )


@dataclass
class _ShardResult:
    ref_index: int
    shard: int
    seqs: list[int] = field(default_factory=list)
    jpegs: list[bytes] = field(default_factory=list)
    actions: list[tuple[float, float]] = field(default_factory=list)
    images: list[NDArray[np.uint8]] = field(default_factory=list)
    report: LoadReport = field(default_factory=LoadReport)


def _action(record: dict[str, Any]) -> tuple[float, float] | None:
    """The action to learn for a frame: its teacher's ``label`` when it has one (frames recorded
    with noise injection), else the action the car applied."""
    label = record.get("label")
    source = label if isinstance(label, dict) else record
    values = []
    for name in ACTIONS:
        v = source.get(name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or abs(v) > 1.0:
            return None
        values.append(float(v))
    return values[0], values[1]


class _PixelBudget:
    """Bytes of decoded pixels the loader may keep; once exceeded, none are kept."""

    def __init__(self, limit_bytes: float) -> None:
        self.limit = limit_bytes
        self.used = 0
        self.exhausted = limit_bytes <= 0
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bool:
        with self._lock:
            if self.exhausted or self.used + nbytes > self.limit:
                self.exhausted = True
                return False
            self.used += nbytes
            return True


def _read_one_shard(
    store: ObjectStore, ref: SessionRef, ref_index: int, index: int, budget: _PixelBudget
) -> _ShardResult:
    out = _ShardResult(ref_index, index)
    key = shard_key(ref.car, ref.session, index)
    rep = out.report
    try:
        data = store.get(key)
    except MissingObject:
        rep.missing_shards += 1
        rep.note(f"{key}: missing")
        return out
    except StoreError as exc:
        rep.missing_shards += 1
        rep.note(f"{key}: {exc}")
        return out
    stats = ReadStats()
    try:
        for sample in read_shard(io.BytesIO(data), stats):
            action = _action(sample.record)
            if action is None:
                rep.skipped_frames += 1
                rep.note(f"{key}: {sample.seq:09d}.json has no valid steering/throttle")
                continue
            img = decode_jpeg(sample.jpeg)
            if img is None:
                rep.skipped_frames += 1
                rep.note(f"{key}: {sample.seq:09d}.jpg does not decode")
                continue
            out.seqs.append(sample.seq)
            out.jpegs.append(sample.jpeg)
            out.actions.append(action)
            if budget.take(img.nbytes):
                out.images.append(img)
    except ShardError as exc:
        rep.corrupt_shards += 1
        rep.note(f"{key}: {exc}")
        return out
    rep.shards += 1
    rep.skipped_frames += stats.skipped
    for reason in stats.reasons:
        rep.note(f"{key}: {reason}")
    return out


def _session_shards(store: ObjectStore, ref: SessionRef, report: LoadReport) -> list[int]:
    """Shard indices of a session: the manifest's list, plus any shard in the store it does not name."""
    prefix = session_prefix(ref.car, ref.session)
    present: set[int] = set()
    for key in store.list(prefix):
        name = key[len(prefix) :]
        if name.startswith("shard-") and name.endswith(".tar") and name[6:-4].isdigit():
            present.add(int(name[6:-4]))
    try:
        manifest = SessionManifest.from_json(store.get(session_manifest_key(ref.car, ref.session)))
    except MissingObject:
        if not present:
            report.note(f"{prefix}: no manifest and no shards")
        return sorted(present)
    except ContractError as exc:
        report.note(f"{prefix}manifest.json: {exc}; reading the shards found")
        return sorted(present)
    report.missing_frames += manifest.missing
    named = {int(s.name[6:-4]) for s in manifest.shards}
    return sorted(named | present)


def load_frames(
    store: ObjectStore,
    sessions: Sequence[SessionRef],
    *,
    cache_pixels_mb: float = 2048,
    threads: int = 8,
    on_shard: Callable[[int, int], None] | None = None,
) -> FrameTable:
    """Read the frames of ``sessions`` from ``store`` into memory, skipping (and counting) bad ones.

    Decoded pixels are kept while they fit ``cache_pixels_mb`` (then an epoch only preprocesses);
    beyond that each sample decodes its JPEG again. ``on_shard(done, total)`` reports progress.
    """
    report = LoadReport(sessions=len(sessions))
    jobs: list[tuple[int, SessionRef, int]] = []
    for i, ref in enumerate(sessions):
        for index in _session_shards(store, ref, report):
            jobs.append((i, ref, index))
    budget = _PixelBudget(cache_pixels_mb * 1024 * 1024)
    results: list[_ShardResult] = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = [pool.submit(_read_one_shard, store, ref, i, index, budget) for i, ref, index in jobs]
        for done, fut in enumerate(futures, 1):
            results.append(fut.result())
            if on_shard is not None:
                on_shard(done, len(futures))
    keep_pixels = not budget.exhausted
    jpegs: list[bytes] = []
    images: list[NDArray[np.uint8]] = []
    actions: list[tuple[float, float]] = []
    session_index: list[int] = []
    seqs: list[int] = []
    for res in sorted(results, key=lambda r: (r.ref_index, r.shard)):
        report.merge(res.report)
        jpegs += res.jpegs
        actions += res.actions
        seqs += res.seqs
        session_index += [res.ref_index] * len(res.jpegs)
        if keep_pixels:
            images += res.images
        res.images = []
    report.sessions = len(sessions)
    report.frames = len(jpegs)
    return FrameTable(
        sessions=list(sessions),
        jpegs=jpegs,
        actions=np.asarray(actions, dtype=np.float32).reshape(-1, 2),
        session_index=np.asarray(session_index, dtype=np.int32),
        seqs=np.asarray(seqs, dtype=np.int64),
        images=images if keep_pixels else None,
        report=report,
    )


# --- weighting -----------------------------------------------------------------------------------
def steering_weights(
    steering: NDArray[np.float32], bins: int = 21, power: float = 1.0, max_weight: float = 10.0
) -> NDArray[np.float32]:
    """Per-sample weights against the straight-road bias: rare steering angles count more.

    A sample's weight is ``(1 / frequency of its steering bin) ** power``, capped at ``max_weight``
    times the smallest weight and normalised to a mean of 1.
    """
    if len(steering) == 0:
        return np.zeros(0, dtype=np.float32)
    edges = np.linspace(-1.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(steering, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(idx, minlength=bins).astype(np.float64)
    w: NDArray[np.float64] = (1.0 / counts[idx]) ** power
    w = np.minimum(w, w.min() * max_weight)
    w = w / w.mean()
    return np.asarray(w, dtype=np.float32)


# --- dataset and sampler -------------------------------------------------------------------------
class DrivingDataset(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Samples ``(image tensor, [steering, throttle], weight)`` of a :class:`FrameTable`.

    Every frame is preprocessed with the card's :func:`~schemas.model_card.preprocess` — once, up
    front, while the results fit ``cache_mb``; otherwise on each access. A key is a frame index, or
    ``(index, draws)`` as :class:`EpochSampler` yields them (``draws``: the augmentation's uniform
    numbers, or an int seed); augmentation (:mod:`trainer.augment`) runs only when a config is
    given and the key carries draws.
    """

    def __init__(
        self,
        table: FrameTable,
        spec: InputSpec,
        augment_config: AugmentConfig | None = None,
        weights: NDArray[np.float32] | None = None,
        cache_mb: float = 1024,
    ) -> None:
        self.table = table
        self.spec = spec
        self.augment = augment_config if augment_config is not None and augment_config.enabled else None
        self.space = PixelSpace(spec)
        self.weights = weights if weights is not None else np.ones(len(table), dtype=np.float32)
        per_sample = 4 * int(np.prod(spec.shape))
        self._cache: NDArray[np.float32] | None = None
        if len(table) and per_sample * len(table) <= cache_mb * 1024 * 1024:
            self._cache = np.empty((len(table), *spec.shape), dtype=np.float32)
            for i in range(len(table)):
                self._cache[i] = preprocess(table.image(i), spec)

    def __len__(self) -> int:
        return len(self.table)

    def sample(self, index: int) -> NDArray[np.float32]:
        """The preprocessed frame ``index`` (not augmented)."""
        if self._cache is not None:
            cached: NDArray[np.float32] = self._cache[index]
            return cached
        return preprocess(self.table.image(index), self.spec)

    def __getitem__(self, key: int | tuple[int, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y, w = self.__getitems__([key])
        return x[0], y[0], w[0]

    def __getitems__(self, keys: Sequence[int | tuple[int, Any]]) -> Batch:
        """A whole batch at once (the DataLoader calls this; see :meth:`loader`): the samples are
        gathered and augmented as one array, which costs far less than one sample at a time."""
        index = np.fromiter((k if isinstance(k, int) else k[0] for k in keys), np.int64, count=len(keys))
        if self._cache is not None:
            x = self._cache[index]
        else:
            x = np.stack([preprocess(self.table.image(int(i)), self.spec) for i in index])
        actions = self.table.actions[index]
        steering = actions[:, 0]
        if self.augment is not None and keys and not isinstance(keys[0], int):
            draws = np.stack([_draws(k[1]) for k in keys])  # type: ignore[index]
            x, steering = augment_samples(x, steering, draws, self.augment, self.space)
        y = np.stack([steering, actions[:, 1]], axis=1).astype(np.float32)
        weights = torch.from_numpy(self.weights[index])
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y), weights

    def loader(self, batch_size: int, sampler: Sampler[Any] | None = None, **kwargs: Any) -> DataLoader[Any]:
        """A DataLoader that fetches whole batches through :meth:`__getitems__`."""
        return DataLoader(self, batch_size=batch_size, sampler=sampler, collate_fn=_as_batch, **kwargs)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _as_batch(batch: Any) -> Any:
    """The collate function of :meth:`DrivingDataset.loader`: the dataset already made the batch."""
    return batch


def _draws(value: Any) -> NDArray[np.float64]:
    if isinstance(value, int):
        return np.random.default_rng(value).random(DRAWS)
    return np.asarray(value, dtype=np.float64)


class EpochSampler(Sampler[tuple[int, Any]]):
    """The order of one epoch for one process, with the augmentation's random numbers per draw.

    Every process computes the same global order from ``(seed, epoch)`` and takes every
    ``world``-th draw from ``rank``. Training pads the order so every process takes the same number
    of steps; evaluation (``pad=False``) visits each frame exactly once over all processes.
    ``weights`` (with replacement) draws rare steering angles more often.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        weights: NDArray[np.float32] | None = None,
        rank: int = 0,
        world: int = 1,
        pad: bool = True,
    ) -> None:
        super().__init__()
        self.n, self.seed, self.shuffle, self.rank, self.world, self.pad = n, seed, shuffle, rank, world, pad
        self.weights = torch.as_tensor(weights, dtype=torch.float64) if weights is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global(self) -> tuple[torch.Tensor, NDArray[np.float64]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.n == 0:
            order = torch.zeros(0, dtype=torch.long)
        elif self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        elif self.shuffle:
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if self.pad and self.world > 1 and len(order) % self.world:
            extra = self.world - len(order) % self.world
            order = torch.cat([order, order[:extra]])
        draws = torch.rand((len(order), DRAWS), generator=g, dtype=torch.float64).numpy()
        return order, draws

    def __iter__(self) -> Iterator[tuple[int, NDArray[np.float64]]]:
        order, draws = self._global()
        for i in range(self.rank, len(order), self.world):
            yield int(order[i]), draws[i]

    def __len__(self) -> int:
        total = self.n
        if self.pad and self.world > 1:
            total = math.ceil(self.n / self.world) * self.world
        return len(range(self.rank, total, self.world))


def preprocessed_samples(table: FrameTable, spec: InputSpec, count: int = 256) -> NDArray[np.float32]:
    """Up to ``count`` frames spread evenly over ``table``, preprocessed (calibration, parity checks)."""
    if len(table) == 0:
        return np.zeros((0, *spec.shape), dtype=np.float32)
    idx = np.unique(np.linspace(0, len(table) - 1, min(count, len(table))).round().astype(int))
    return np.stack([preprocess(table.image(int(i)), spec) for i in idx])
