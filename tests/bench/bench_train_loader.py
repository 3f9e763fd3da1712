"""Training throughput from shards vs from in-memory tensors, same model, same steps. Goal: ≤ 10 %
loader overhead.

    python tests/bench/bench_train_loader.py
    python -m pytest tests/bench/bench_train_loader.py -s -p no:cacheprovider -o python_files='bench_*.py'

The data are expert laps recorded in the simulator (JPEG shards in a local store). "In-memory
tensors" trains on frames preprocessed once into one tensor (no decoding, no augmentation): the
ceiling. "Shards" is what ``fit`` does: frames loaded from the shards (pixels cached), sampled,
augmented and preprocessed with the card's function on every step, with 0 or 1 loader worker; "no
pixel cache" decodes every JPEG again. One torch thread (the default on a small machine). Rounds
alternate between the pipelines so load from elsewhere on the machine hits all alike; medians are
compared.
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

from schemas.model_card import InputSpec, preprocess  # noqa: E402
from trainer.augment import AugmentConfig  # noqa: E402
from trainer.data import DrivingDataset, EpochSampler, FrameTable, list_sessions, load_frames  # noqa: E402
from trainer.models import ModelOptions, build_model  # noqa: E402
from trainer.record import RecordConfig, record_expert  # noqa: E402
from trainer.store import LocalStore  # noqa: E402

BATCH = 64
STEPS = 40  # per round and pipeline
ROUNDS = 3
GOAL = 0.10

Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]


def _rate(model_options: ModelOptions, batches: Batches) -> float:
    """Images per second of STEPS training steps (after 3 warm-up steps) on batches from ``batches``."""
    torch.manual_seed(0)
    model = build_model("linear", model_options)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    it = batches()
    seen = 0
    t0 = 0.0
    for step in range(STEPS + 3):
        if step == 3:
            t0 = time.perf_counter()
            seen = 0
        x, y, w = next(it)
        loss = model.loss(model(x), y, w)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        seen += x.shape[0]
    return seen / (time.perf_counter() - t0)


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


def _from_shards(table: FrameTable, spec: InputSpec, workers: int) -> Iterator[Tensors]:
    """What fit does: sample, augment and preprocess every frame on every step."""
    ds = DrivingDataset(table, spec, AugmentConfig())
    sampler = EpochSampler(len(ds), seed=0)
    loader = DataLoader(
        ds, batch_size=BATCH, sampler=sampler, num_workers=workers, persistent_workers=workers > 0
    )
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
        for label, options in (
            ("demo input 80×40", ModelOptions(width=80, height=40)),
            ("default input 160×80", ModelOptions()),
        ):
            spec = options.input_spec()
            pipelines: dict[str, Batches] = {
                "in-memory tensors": partial(_from_memory, _in_memory(table, spec)),
                "shards, 0 loader workers": partial(_from_shards, table, spec, 0),
                "shards, 1 loader worker": partial(_from_shards, table, spec, 1),
                "shards, no pixel cache, 1 worker": partial(_from_shards, no_cache, spec, 1),
            }
            rates: dict[str, list[float]] = {k: [] for k in pipelines}
            for _ in range(ROUNDS):
                for name, batches in pipelines.items():
                    rates[name].append(_rate(options, batches))
            base = statistics.median(rates["in-memory tensors"])
            lines.append(f"{label}, linear model, batch {BATCH}, 1 torch thread (median of {ROUNDS} rounds):")
            for name, values in rates.items():
                r = statistics.median(values)
                overhead = 1 - r / base
                verdict = "meets" if overhead <= GOAL else "misses"
                mark = (
                    ""
                    if name == "in-memory tensors"
                    else f"  loader overhead {overhead:+.1%} ({verdict} ≤ {GOAL:.0%})"
                )
                lines.append(f"  {name:34s} {r:7.0f} img/s{mark}")
    return lines


def test_loader_overhead() -> None:
    for line in run():
        print(line)


if __name__ == "__main__":
    test_loader_overhead()
