"""Training throughput from shards vs from in-memory tensors, same model, same steps. Goal: ≤ 10 %
loader overhead.

    python tests/bench/bench_train_loader.py
    python -m pytest tests/bench/bench_train_loader.py -s -p no:cacheprovider -o python_files='bench_*.py'

The data are expert laps recorded in the simulator (JPEG shards in a local store). "In-memory
tensors" trains on frames preprocessed once into one tensor, without augmentation: the ceiling.
"Shards" is what ``fit`` does: frames read from the shards and preprocessed once with the card's
function (cached), then sampled and augmented on every step, with 0 or 1 loader worker; "no caches"
decodes and preprocesses every JPEG on every step (what a dataset too large for the caches costs).
One torch thread (the default on a small machine). The pipelines take their training steps in
turn, one each, again and again, so that load from elsewhere on the machine hits all alike; the
median time per step of each is compared.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra.store import LocalStore  # noqa: E402
from schemas.model_card import InputSpec, preprocess  # noqa: E402
from trainer.augment import AugmentConfig  # noqa: E402
from trainer.data import DrivingDataset, EpochSampler, FrameTable, list_sessions, load_frames  # noqa: E402
from trainer.models import ModelOptions, build_model  # noqa: E402
from trainer.record import RecordConfig, record_expert  # noqa: E402

BATCH = 64
WARMUP = 5
STEPS = 150  # per pipeline
GOAL = 0.10

Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]


class _Trainer:
    """One model and optimizer fed by one pipeline; :meth:`step` times one batch + training step."""

    def __init__(self, architecture: str, options: ModelOptions, batches: Batches) -> None:
        torch.manual_seed(0)
        self.model = build_model(architecture, options)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.batches = batches()
        self.times: list[float] = []

    def step(self, record: bool = True) -> None:
        t = time.perf_counter()
        x, y, w = next(self.batches)
        loss = self.model.loss(self.model(x), y, w)
        self.opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        self.opt.step()
        if record:
            self.times.append((time.perf_counter() - t) / x.shape[0])


def _rates(architecture: str, options: ModelOptions, pipelines: dict[str, Batches]) -> dict[str, float]:
    """Images per second of each pipeline: steps taken in turn (one of each, again and again) so
    that load from elsewhere hits all alike; the median time per image of each."""
    trainers = {name: _Trainer(architecture, options, batches) for name, batches in pipelines.items()}
    for _ in range(WARMUP):
        for trainer in trainers.values():
            trainer.step(record=False)
    for _ in range(STEPS):
        for trainer in trainers.values():
            trainer.step()
    return {name: 1.0 / statistics.median(t.times) for name, t in trainers.items()}


def _forever(
    loader: DataLoader[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], sampler: EpochSampler
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _in_memory(table: FrameTable, spec: InputSpec) -> Tensors:
    x = torch.from_numpy(np.stack([preprocess(table.image(i), spec) for i in range(len(table))]))
    return x, torch.from_numpy(table.actions.copy()), torch.ones(len(table))


def _from_memory(tensors: Tensors) -> Iterator[Tensors]:
    """Random batches of frames preprocessed once: no decoding, no augmentation."""
    x, y, w = tensors
    g = torch.Generator().manual_seed(0)
    while True:
        for idx in torch.randperm(len(x), generator=g).split(BATCH):
            yield x[idx], y[idx], w[idx]


def _from_shards(
    table: FrameTable, spec: InputSpec, workers: int, cache_mb: float = 1024
) -> Iterator[Tensors]:
    """What fit does: frames from the shards, preprocessed once (cached) or on every access
    (``cache_mb=0``), sampled and augmented on every step."""
    ds = DrivingDataset(table, spec, AugmentConfig(), cache_mb=cache_mb)
    sampler = EpochSampler(len(ds), seed=0)
    loader = ds.loader(BATCH, sampler, num_workers=workers, persistent_workers=workers > 0)
    return _forever(loader, sampler)


def run() -> list[str]:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        t = time.perf_counter()
        record_expert(store, "oval", sessions=4, config=RecordConfig(laps=2))
        record_s = time.perf_counter() - t
        t = time.perf_counter()
        table = load_frames(store, list_sessions(store))
        load_s = time.perf_counter() - t
        size_mb = sum(len(j) for j in table.jpegs) / 1e6
        lines.append(
            f"data: {len(table)} frames ({size_mb:.1f} MB of JPEG) recorded in {record_s:.1f} s; "
            f"read from shards, checked and decoded in {load_s:.2f} s ({len(table) / load_s:.0f} frames/s)"
        )
        no_cache = load_frames(store, list_sessions(store), cache_pixels_mb=0)
        for architecture, label, options in (
            ("mobilenet", "demo input 80×40", ModelOptions(width=80, height=40)),
            ("mobilenet", "default input 160×80", ModelOptions()),
            ("linear", "demo input 80×40", ModelOptions(width=80, height=40)),
            ("linear", "default input 160×80", ModelOptions()),
        ):
            spec = options.input_spec()
            pipelines: dict[str, Batches] = {
                "in-memory tensors": partial(_from_memory, _in_memory(table, spec)),
                "shards, 0 loader workers": partial(_from_shards, table, spec, 0),
                "shards, 1 loader worker": partial(_from_shards, table, spec, 1),
                "shards, no caches (decode each step)": partial(_from_shards, no_cache, spec, 0, 0),
            }
            rates = _rates(architecture, options, pipelines)
            base = rates["in-memory tensors"]
            lines.append(f"{architecture}, {label}, batch {BATCH}, 1 torch thread (median of {STEPS} steps):")
            for name, r in rates.items():
                overhead = 1 - r / base
                verdict = "meets" if overhead <= GOAL else "misses"
                mark = (
                    ""
                    if name == "in-memory tensors"
                    else f"  loader overhead {overhead:+.1%} ({verdict} ≤ 10%)"
                )
                lines.append(f"  {name:38s} {r:7.0f} img/s{mark}")
    return lines


def test_loader_overhead() -> None:
    for line in run():
        print(line)


if __name__ == "__main__":
    test_loader_overhead()
