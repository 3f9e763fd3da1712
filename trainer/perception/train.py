"""Training the perception network: augmentation, class weights, checkpoints, early stopping.

One run trains every task's head at once on the train split, scores the validation split after
each epoch (macro F1 per task, averaged: ``val_score``) of an exponential moving average of the
weights (``ema``), keeps the best of those in
``checkpoints/best.pt`` (and the latest in ``last.pt``, so a crash loses at most an epoch) and
stops when ``val_score`` has not improved for ``patience`` epochs. Augmentation is
:mod:`trainer.augment`'s (colour, shadow, blur, shift, mirror), drawn from ``(seed, epoch)``; a
mirror keeps every label (a box is a box both ways round).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import f1_score
from torch.optim.swa_utils import AveragedModel

from trainer.augment import DRAWS, AugmentConfig, augment_batch
from trainer.perception import TASKS
from trainer.perception.dataset import PerceptionTable
from trainer.perception.models import NetOptions, PerceptionNet

EpochCallback = Callable[[int, dict[str, float]], None]


def _default_augment() -> AugmentConfig:
    return AugmentConfig(shift=0.05, shift_p=0.5, flip_p=0.5, blur_p=0.3, shadow_p=0.3)


class TrainConfig(BaseModel):
    """One training run. ``threads`` bounds torch's CPU threads (the trainer shares its machine)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=25, ge=1, le=1000)
    patience: int = Field(default=5, ge=1, le=100, description="epochs without improvement before stopping")
    batch_size: int = Field(default=64, ge=2, le=4096)
    lr: float = Field(default=3e-3, gt=0, le=1)
    weight_decay: float = Field(default=1e-4, ge=0, le=1)
    label_smoothing: float = Field(default=0.05, ge=0, lt=0.5)
    class_weights: bool = Field(default=True, description="weigh each class by its inverse frequency")
    net: NetOptions = Field(default_factory=NetOptions)
    augment: AugmentConfig = Field(default_factory=_default_augment)
    colour_cast_p: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="probability of a colour cast: the channels shuffled and each scaled by its own gain. "
        "Off by default: each obstacle kind and surface has its own colour family in the scenes, and "
        "the cast erased that cue (docs/perception.md)",
    )
    channel_gain: float = Field(default=0.3, ge=0, le=1, description="largest relative gain of one channel")
    grey_p: float = Field(default=0.0, ge=0, le=1, description="probability of a grey frame")
    ema: float = Field(
        default=0.998,
        ge=0,
        lt=1,
        description="decay of the weights' exponential moving average per step, which is what is "
        "scored, kept and returned (0: the raw weights). The raw weights' validation score jumps by "
        "a few points from epoch to epoch at these learning rates, so early stopping kept a lucky "
        "epoch (docs/perception.md)",
    )
    threads: int = Field(default=1, ge=1, le=256)
    seed: int = 0


@dataclass
class TrainResult:
    model: PerceptionNet  # with the best epoch's weights
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    stopped_early: bool = False
    seconds: float = 0.0


def to_input(images: NDArray[np.uint8]) -> torch.Tensor:
    """N×H×W×3 uint8 RGB → N×3×H×W float in [-1, 1] (the network's input; the car does the same)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def _weights(labels: NDArray[np.int64], classes: int) -> torch.Tensor:
    counts = np.bincount(labels[labels >= 0], minlength=classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / classes, 0.0)
    return torch.tensor(np.sqrt(w), dtype=torch.float32)  # square root: weighs rare classes up, not wildly


@torch.no_grad()
def predict(
    model: PerceptionNet, images: NDArray[np.uint8], batch: int = 256
) -> dict[str, NDArray[np.float32]]:
    """Softmax probabilities per task for uint8 images."""
    model.eval()
    out: dict[str, list[NDArray[np.float32]]] = {t: [] for t in model.tasks}
    for i in range(0, len(images), batch):
        logits = model(to_input(images[i : i + batch]))
        for t in model.tasks:
            out[t].append(torch.softmax(logits[t], dim=1).numpy())
    return {t: np.concatenate(v) if v else np.zeros((0, len(TASKS[t])), np.float32) for t, v in out.items()}


def score(model: PerceptionNet, table: PerceptionTable) -> dict[str, float]:
    """Accuracy and macro F1 per task on ``table``, and ``score``: the tasks' mean macro F1."""
    probs = predict(model, table.images)
    metrics: dict[str, float] = {}
    for task in model.tasks:
        y = table.labels[task]
        keep = y >= 0
        pred = probs[task].argmax(axis=1)
        labels = list(range(len(TASKS[task])))
        present = sorted(set(y[keep].tolist()))
        metrics[f"{task}_accuracy"] = float((pred[keep] == y[keep]).mean()) if keep.any() else math.nan
        metrics[f"{task}_f1"] = float(
            f1_score(y[keep], pred[keep], labels=present or labels, average="macro", zero_division=0)
        )
    metrics["score"] = float(np.mean([metrics[f"{t}_f1"] for t in model.tasks]))
    return metrics


def colour_cast(pixels: NDArray[np.float32], rng: np.random.Generator, config: TrainConfig) -> None:
    """In place on a batch ``B×3×H×W`` in pixel units: per sample, with ``colour_cast_p`` a random
    channel order and per-channel gains, with ``grey_p`` the mean of the channels instead."""
    n = len(pixels)
    cast = rng.random(n) < config.colour_cast_p
    grey = rng.random(n) < config.grey_p
    orders = np.argsort(rng.random((n, 3)), axis=1)
    gains = 1.0 + (2 * rng.random((n, 3)) - 1) * config.channel_gain
    for i in np.flatnonzero(cast):
        pixels[i] = pixels[i][orders[i]] * gains[i, :, None, None].astype(np.float32)
    for i in np.flatnonzero(grey):
        pixels[i] = pixels[i].mean(axis=0, keepdims=True)
    np.clip(pixels, 0.0, 255.0, out=pixels)


def _epoch(
    model: PerceptionNet,
    opt: torch.optim.Optimizer,
    table: PerceptionTable,
    config: TrainConfig,
    weights: dict[str, torch.Tensor],
    epoch: int,
    average: AveragedModel | None = None,
) -> float:
    model.train()
    rng = np.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(table))
    total, count = 0.0, 0
    for start in range(0, len(order), config.batch_size):
        idx = np.sort(order[start : start + config.batch_size])
        if len(idx) < 2:
            continue
        pixels = np.ascontiguousarray(table.images[idx].transpose(0, 3, 1, 2), dtype=np.float32)
        if config.augment.enabled:
            draws = rng.random((len(idx), DRAWS))
            pixels, _ = augment_batch(pixels, np.zeros(len(idx), np.float32), draws, config.augment)
        if config.colour_cast_p > 0 or config.grey_p > 0:
            colour_cast(pixels, rng, config)
        x = torch.from_numpy(pixels) / 127.5 - 1.0
        out = model(x)
        loss = torch.zeros(())
        for task in model.tasks:
            y = torch.from_numpy(table.labels[task][idx])
            loss = loss + F.cross_entropy(
                out[task], y, weight=weights[task], ignore_index=-1, label_smoothing=config.label_smoothing
            )
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if average is not None:
            average.update_parameters(model)
        total += float(loss.detach()) * len(idx)
        count += len(idx)
    return total / max(count, 1)


def train(
    splits: dict[str, PerceptionTable],
    config: TrainConfig | None = None,
    out_dir: Path | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train on ``splits["train"]``, early-stop on ``splits["val"]``. ``on_epoch(epoch, metrics)``
    sees each epoch's metrics; it may raise to end the run (a pruned search trial does)."""
    c = config or TrainConfig()
    torch.manual_seed(c.seed)
    torch.set_num_threads(c.threads)
    train_t, val_t = splits["train"], splits["val"]
    if len(train_t) == 0 or len(val_t) == 0:
        raise ValueError("training needs frames in both the train and the val split")
    model = PerceptionNet(c.net)
    average = AveragedModel(model, avg_fn=_ema(c.ema), use_buffers=True) if c.ema else None
    kept = cast(PerceptionNet, average.module) if average is not None else model
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
    weights = {
        t: _weights(train_t.labels[t], len(TASKS[t])) if c.class_weights else torch.ones(len(TASKS[t]))
        for t in model.tasks
    }
    ckpt_dir = out_dir / "checkpoints" if out_dir is not None else None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    best: dict[str, Any] = {"score": -1.0, "epoch": -1, "state": None}
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    stopped = False
    for epoch in range(c.epochs):
        loss = _epoch(model, opt, train_t, c, weights, epoch, average)
        sched.step()
        metrics = {"epoch": float(epoch), "train_loss": loss} | {
            f"val_{k}": v for k, v in score(kept, val_t).items()
        }
        history.append(metrics)
        if metrics["val_score"] > best["score"]:
            best = {"score": metrics["val_score"], "epoch": epoch, "state": _copy_state(kept)}
            if ckpt_dir is not None:
                _save(ckpt_dir / "best.pt", kept, c, epoch, metrics)
        if ckpt_dir is not None:
            _save(ckpt_dir / "last.pt", kept, c, epoch, metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if epoch - best["epoch"] >= c.patience:
            stopped = True
            break
    kept.load_state_dict(best["state"])
    return TrainResult(
        model=kept,
        best_epoch=int(best["epoch"]),
        best_score=float(best["score"]),
        history=history,
        checkpoint=ckpt_dir / "best.pt" if ckpt_dir is not None else None,
        stopped_early=stopped,
        seconds=time.perf_counter() - started,
    )


def _ema(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | int], torch.Tensor]:
    """The moving average's step, its decay warmed up as ``(1 + n) / (10 + n)`` after ``n`` steps
    (an average of about the last tenth of the steps until ``decay`` caps it), so a short run's
    average is not stuck near its first weights."""

    def step(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
        d = min(decay, (1 + float(n)) / (10 + float(n)))
        return averaged * d + current * (1 - d)

    return step


def _copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _save(
    path: Path, model: PerceptionNet, config: TrainConfig, epoch: int, metrics: dict[str, float]
) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "state": model.state_dict(),
            "net": model.options.model_dump(),
            "config": config.model_dump(),
            "epoch": epoch,
            "metrics": metrics,
        },
        tmp,
    )
    tmp.replace(path)


def load_checkpoint(path: Path) -> PerceptionNet:
    """The network saved in a checkpoint (``best.pt`` or ``last.pt``)."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    model = PerceptionNet(NetOptions.model_validate(data["net"]))
    model.load_state_dict(data["state"])
    model.eval()
    return model
