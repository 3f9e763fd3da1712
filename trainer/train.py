"""The training loop: one function, :func:`fit`, for a single process, Horovod and torchrun.

AdamW with a linear warm-up and cosine decay per step, early stopping on the validation loss,
checkpoints after every epoch (``last.pt``) and at every improvement (``best.pt``) written by rank 0
only, exact resume from ``last.pt``, per-epoch metrics (loss; MAE and R² per output; accuracy for
categorical outputs) reduced over all processes, a rich progress bar and optional MQTT progress
events. For a given seed the run is deterministic: the sample order and every augmentation derive
from ``(seed, epoch)``, dropout from ``(seed, epoch, rank)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from infra.files import write_atomic, write_atomic_with
from infra.store import open_store
from schemas.input_stats import FeatureStats, FeatureStatsAccumulator, InputStats, InputStatsAccumulator
from schemas.messages import JobProgress, SessionRef
from schemas.model_card import ModelCard, preprocess
from trainer.augment import AugmentConfig
from trainer.data import (
    DrivingDataset,
    EpochSampler,
    FrameTable,
    LoadReport,
    Weighting,
    list_sessions,
    load_frames,
    split_sessions,
    steering_weights,
)
from trainer.distributed import Backend, detect
from trainer.models import ACTION_INDEX, DEFAULT_ARCHITECTURE, ModelOptions, PilotModel, build_model
from trainer.progress import NullSink, ProgressSink, job_sink

log = logging.getLogger(__name__)
CHECKPOINT_VERSION = 1


class TrainConfig(BaseModel):
    """Everything one training run needs; saved with every checkpoint and in ``result.json``."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="object store URL: a directory, file://… or s3://bucket/prefix")
    run_dir: str = Field(description="local directory for checkpoints, metrics and the result")
    sessions: list[SessionRef] = Field(
        default_factory=list, description="sessions to learn from; all if empty"
    )
    val_sessions: list[SessionRef] | None = Field(
        default=None, description="explicit validation sessions (otherwise split by val_fraction)"
    )
    val_fraction: float = Field(default=0.2, ge=0, lt=1)
    architecture: str = DEFAULT_ARCHITECTURE
    model: ModelOptions = Field(default_factory=ModelOptions)
    epochs: int = Field(default=20, ge=1, le=10_000)
    batch_size: int = Field(default=64, ge=1, le=65_536, description="per process")
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    weight_decay: float = Field(default=1e-2, ge=0)
    warmup_epochs: float = Field(default=1.0, ge=0)
    min_lr_ratio: float = Field(default=0.05, ge=0, le=1)
    patience: int = Field(default=5, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(default=1e-4, ge=0)
    seed: int = 0
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    weighting: Weighting = "loss"
    loader_workers: int = Field(default=0, ge=0, le=64, description="DataLoader worker processes")
    threads: int | None = Field(default=None, ge=1, description="torch threads per process")
    cache_pixels_mb: float = Field(default=2048, ge=0)
    resume: bool = True
    progress_bar: bool = True
    broker: str | None = Field(default=None, description="MQTT URL for progress events")
    topic_prefix: str = "paddock"
    job: str | None = None
    job_kind: str = "train"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        text = Path(path).read_text()
        try:
            return cls.model_validate_json(text)
        except Exception as exc:
            raise ValueError(f"{path}: invalid training config: {exc}") from None


class EpochMetrics(BaseModel):
    epoch: int
    lr: float
    train_loss: float
    val_loss: float | None
    metrics: dict[str, float] = Field(default_factory=dict)
    duration_s: float
    images_per_s: float


class TrainResult(BaseModel):
    run_dir: str
    architecture: str
    card: ModelCard
    launcher: str
    world: int
    epochs_run: int
    best_epoch: int
    best_loss: float
    monitor: str
    stopped_early: bool
    history: list[EpochMetrics]
    metrics: dict[str, float]
    data_report: dict[str, Any]
    train_sessions: list[SessionRef]
    val_sessions: list[SessionRef]
    train_frames: int
    val_frames: int
    checkpoint: str
    weights_sha256: list[str] = Field(description="digest of the final weights on each rank")
    duration_s: float

    def save(self, path: Path) -> None:
        write_atomic(path, self.model_dump_json(indent=2).encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainResult:
        return cls.model_validate_json(Path(path).read_text())


# --- helpers -------------------------------------------------------------------------------------
def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    write_atomic_with(path, lambda out: torch.save(state, out))


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer, in state-dict order."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[PilotModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint (in eval mode) and return it with the checkpoint dict."""
    try:
        ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not a paddock checkpoint (version {CHECKPOINT_VERSION})")
    model = build_model(ckpt["architecture"], ckpt["options"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt


def default_threads(processes_on_this_machine: int = 1) -> int:
    """Torch threads per process: its share of the cores, but 1 where that share is under 4.

    On a small machine a second OpenMP thread gains little for these models, and when anything
    else needs a core (the simulator, a broker, another process) its spin-waiting can make a
    training step ten times slower; one thread per process stays fast.
    """
    share = (os.cpu_count() or 1) // max(1, processes_on_this_machine)
    return share if share >= 4 else 1


def lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float) -> Any:
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


class _Accumulator:
    """Sums for loss, MAE, R² and accuracy of each output, reducible over processes in one call."""

    def __init__(self, model: PilotModel) -> None:
        self.specs = model.output_specs()
        # per output: n, sum|e|, sum e², sum y, sum y², correct ; plus loss_sum, loss_n
        self.values = torch.zeros(len(self.specs) * 6 + 2, dtype=torch.float64)

    def add(self, model: PilotModel, outputs: tuple[torch.Tensor, ...], y: torch.Tensor, loss: float) -> None:
        pred = model.decode(outputs).double()
        n = y.shape[0]
        for i, spec in enumerate(self.specs):
            t = y[:, ACTION_INDEX[spec.name]].double()
            e = pred[:, i] - t
            base = i * 6
            self.values[base] += n
            self.values[base + 1] += e.abs().sum()
            self.values[base + 2] += (e * e).sum()
            self.values[base + 3] += t.sum()
            self.values[base + 4] += (t * t).sum()
            if spec.kind == "categorical":
                from trainer.models import bin_index

                hit = outputs[i].argmax(dim=1) == bin_index(y[:, ACTION_INDEX[spec.name]], spec.bins)
                self.values[base + 5] += hit.double().sum()
        self.values[-2] += loss * n
        self.values[-1] += n

    def result(self, backend: Backend) -> tuple[float, dict[str, float]]:
        v = backend.all_sum(self.values)
        metrics: dict[str, float] = {}
        for i, spec in enumerate(self.specs):
            n, abs_e, sq_e, sy, syy, correct = (float(x) for x in v[i * 6 : i * 6 + 6])
            if n == 0:
                continue
            metrics[f"{spec.name}_mae"] = abs_e / n
            sst = syy - sy * sy / n
            if sst > 1e-12:  # R² is undefined for a constant target
                metrics[f"{spec.name}_r2"] = 1.0 - sq_e / sst
            if spec.kind == "categorical":
                metrics[f"{spec.name}_accuracy"] = correct / n
        loss = float(v[-2] / v[-1]) if v[-1] > 0 else float("nan")
        return loss, metrics


@contextlib.contextmanager
def _progress_bar(enabled: bool, console: Console) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        yield bar


def _resolve_sessions(config: TrainConfig, backend: Backend) -> tuple[list[SessionRef], list[SessionRef]]:
    store = open_store(config.store)
    sessions = list(config.sessions) or (list_sessions(store) if backend.is_main else [])
    if not config.sessions:
        sessions = backend.broadcast_object(sessions)
    if config.val_sessions is not None:
        val_keys = {(r.car, r.session) for r in config.val_sessions}
        train = [r for r in sessions if (r.car, r.session) not in val_keys]
        return train, list(config.val_sessions)
    return split_sessions(sessions, config.val_fraction, config.seed)


def fit(
    config: TrainConfig,
    backend: Backend | None = None,
    sink: ProgressSink | None = None,
    console: Console | None = None,
) -> TrainResult:
    """Train a model as ``config`` says; return (and on rank 0 save) the :class:`TrainResult`."""
    started = time.monotonic()
    backend = backend or detect()
    console = console or Console(stderr=True)
    own_sink = sink is None
    if sink is None:
        sink = (
            job_sink(config.broker, config.job, config.job_kind, config.topic_prefix)
            if backend.is_main
            else NullSink()
        )
    try:
        return _fit(config, backend, sink, console, started)
    finally:
        if own_sink:
            sink.close()


def _emit(sink: ProgressSink, config: TrainConfig, backend: Backend, **fields: Any) -> None:
    if backend.is_main and config.job:
        sink.emit(JobProgress(job=config.job, kind=config.job_kind, state="running", **fields))


@dataclass
class _Run:
    """What every stage of one run reads: the config, the processes, and where output goes."""

    config: TrainConfig
    backend: Backend
    sink: ProgressSink
    console: Console
    run_dir: Path

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def emit(self, **fields: Any) -> None:
        _emit(self.sink, self.config, self.backend, **fields)

    def say(self, text: str) -> None:
        if self.backend.is_main:
            self.console.print(text)


@dataclass
class _Data:
    train_refs: list[SessionRef]
    val_refs: list[SessionRef]
    report: LoadReport
    train_table: FrameTable
    val_table: FrameTable | None

    @property
    def monitor(self) -> str:
        has_val = self.val_refs and self.val_table is not None and len(self.val_table)
        return "val_loss" if has_val else "train_eval_loss"


@dataclass
class _Loaders:
    train_sampler: EpochSampler
    train: DataLoader[Any]
    eval: DataLoader[Any]


@dataclass
class _Optimization:
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


@dataclass
class _Progress:
    """Where training stands after each epoch (saved in and restored from ``last.pt``)."""

    history: list[EpochMetrics] = field(default_factory=list)
    start_epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped_early: bool = False

    def record(self, entry: EpochMetrics, monitored: float, config: TrainConfig) -> bool:
        """Add an epoch; return whether it improved the monitored loss."""
        self.history.append(entry)
        improved = monitored < self.best_loss - config.min_delta
        if improved:
            self.best_loss, self.best_epoch, self.bad_epochs = monitored, entry.epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped_early = self.bad_epochs >= config.patience and entry.epoch < config.epochs
        return improved


def _fit(
    config: TrainConfig, backend: Backend, sink: ProgressSink, console: Console, started: float
) -> TrainResult:
    run = _Run(config, backend, sink, console, Path(config.run_dir))
    _prepare(run)
    data = _load_data(run)
    model = build_model(config.architecture, config.model)
    loaders = _make_loaders(run, data, model)
    progress, opt = _optimization(run, model, len(loaders.train))
    _train(run, data, loaders, model, opt, progress)
    result = _result(run, data, model, progress, started)
    if backend.is_main:
        result.save(run.run_dir / "result.json")
        (run.run_dir / "card.json").write_text(result.card.model_dump_json(indent=2))
    backend.barrier()
    return result


def _prepare(run: _Run) -> None:
    config, backend = run.config, run.backend
    if backend.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads or default_threads(backend.local_world))
    # Tiny gradients and optimizer moments become denormal floats, which are ~10× slower on CPUs.
    torch.set_flush_denormal(True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(config.seed)


def _load_data(run: _Run) -> _Data:
    """Read the frames of the training and validation sessions."""
    config = run.config
    run.emit(stage="loading", message="reading shards")
    train_refs, val_refs = _resolve_sessions(config, run.backend)
    if not train_refs:
        raise ValueError(f"no training sessions found in {config.store}")
    store = open_store(config.store)
    table = load_frames(store, train_refs + val_refs, cache_pixels_mb=config.cache_pixels_mb)
    data = _Data(
        train_refs,
        val_refs,
        table.report,
        table.subset(train_refs),
        table.subset(val_refs) if val_refs else None,
    )
    if len(data.train_table) == 0:
        raise ValueError(f"no usable frames in the training sessions: {data.report.summary()}")
    run.say(f"[bold]data[/]: {data.report.summary()}")
    run.say(
        f"  train {len(data.train_table)} frames ({len(train_refs)} sessions), "
        f"val {len(data.val_table) if data.val_table else 0} frames ({len(val_refs)} sessions)"
    )
    if not val_refs:
        run.say("  [yellow]one session only: no validation split; monitoring the training loss[/]")
    return data


def _make_loaders(run: _Run, data: _Data, model: PilotModel) -> _Loaders:
    """The training loader (weighted, augmented, sharded over ranks) and the evaluation loader."""
    config, backend = run.config, run.backend
    weights = steering_weights(data.train_table.actions[:, 0]) if config.weighting != "none" else None
    train_ds = DrivingDataset(
        data.train_table,
        model.spec,
        config.augment,
        weights if config.weighting == "loss" else None,
        cache_mb=config.cache_pixels_mb,
    )
    train_sampler = EpochSampler(
        len(train_ds),
        seed=config.seed,
        weights=weights if config.weighting == "sampler" else None,
        rank=backend.rank,
        world=backend.world,
        pad=True,
    )
    val = data.val_table
    eval_ds = DrivingDataset(
        val if val is not None and len(val) else data.train_table, model.spec, cache_mb=config.cache_pixels_mb
    )
    eval_sampler = EpochSampler(
        len(eval_ds), shuffle=False, rank=backend.rank, world=backend.world, pad=False
    )
    args = _loader_args(config)
    return _Loaders(
        train_sampler,
        train_ds.loader(config.batch_size, train_sampler, **args),
        eval_ds.loader(max(config.batch_size, 128), eval_sampler, **args),
    )


def _loader_args(config: TrainConfig) -> dict[str, Any]:
    # Loaders get their own generator: drawing their base seed from the global one would shift
    # the dropout stream depending on whether workers persist across epochs.
    args: dict[str, Any] = {
        "num_workers": config.loader_workers,
        "generator": torch.Generator().manual_seed(config.seed),
    }
    if config.loader_workers and "jax" in sys.modules:
        # JAX (loaded by the TFLite converter) runs threads that a forked worker could deadlock on.
        args["multiprocessing_context"] = "forkserver"
    if config.loader_workers:
        # The sampler runs here and hands each worker its keys (with their augmentation draws), so
        # workers can live across epochs.
        args["persistent_workers"] = True
    return args


def _optimization(run: _Run, model: PilotModel, steps_per_epoch: int) -> tuple[_Progress, _Optimization]:
    """AdamW and its warm-up/cosine schedule, restored from ``last.pt`` when resuming."""
    config, backend = run.config, run.backend
    optimizer: torch.optim.Optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    total_steps = steps_per_epoch * config.epochs
    warmup = min(round(config.warmup_epochs * steps_per_epoch), total_steps // 2)
    resume_state = _resume_state(run)
    progress = _Progress()
    if resume_state is not None:
        progress = _restore(run, resume_state, model, optimizer)
    net = backend.wrap_model(model)
    optimizer = backend.wrap_optimizer(optimizer, model)
    backend.sync_state(model, optimizer)
    # The schedule is made on the (possibly wrapped) optimizer that steps.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, warmup, config.min_lr_ratio)
    )
    if resume_state is not None:
        scheduler.load_state_dict(resume_state["scheduler"])
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
            group["lr"] = lr
    progress.stopped_early = progress.bad_epochs >= config.patience
    return progress, _Optimization(net, optimizer, scheduler)


def _resume_state(run: _Run) -> dict[str, Any] | None:
    config, backend = run.config, run.backend
    last_path = run.ckpt_dir / "last.pt"
    state = None
    if config.resume and backend.is_main and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=False)
    state = backend.broadcast_object(state) if backend.world > 1 else state
    if state is not None and state.get("architecture") != config.architecture:
        raise ValueError(
            f"{last_path} holds a {state.get('architecture')!r} model, the config asks for "
            f"{config.architecture!r}; use another run_dir or resume=false"
        )
    return state


def _restore(
    run: _Run, state: dict[str, Any], model: PilotModel, optimizer: torch.optim.Optimizer
) -> _Progress:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    progress = _Progress(
        history=[EpochMetrics.model_validate(h) for h in state["history"]],
        start_epoch=int(state["epoch"]),
        best_loss=float(state["best_loss"]),
        best_epoch=int(state["best_epoch"]),
        bad_epochs=int(state["bad_epochs"]),
    )
    run.say(f"[bold]resuming[/] {run.ckpt_dir / 'last.pt'} after epoch {progress.start_epoch}")
    return progress


def _train(
    run: _Run, data: _Data, loaders: _Loaders, model: PilotModel, opt: _Optimization, progress: _Progress
) -> None:
    """Epochs until the last one or the early stop: train, evaluate, checkpoint, report."""
    config = run.config
    steps = len(loaders.train)
    run.emit(stage="train", epoch=progress.start_epoch, epochs=config.epochs, step=0, total_steps=steps)
    with _progress_bar(config.progress_bar and run.backend.is_main, run.console) as bar:
        for epoch in range(progress.start_epoch, config.epochs):
            if progress.stopped_early:
                break
            t0 = time.monotonic()
            totals = _train_epoch(run, loaders, model, opt, epoch, bar)
            train_loss = float(totals[0] / max(1.0, float(totals[1])))
            images_per_s = float(totals[1]) / max(1e-9, time.monotonic() - t0)
            eval_loss, metrics = evaluate_loader(model, loaders.eval, run.backend)
            entry = EpochMetrics(
                epoch=epoch + 1,
                lr=float(opt.scheduler.get_last_lr()[0]),
                train_loss=train_loss,
                val_loss=eval_loss if data.monitor == "val_loss" else None,
                metrics=metrics,
                duration_s=time.monotonic() - t0,
                images_per_s=images_per_s,
            )
            improved = progress.record(entry, eval_loss, config)
            if run.backend.is_main:
                _save_epoch(run, data, model, opt, progress, improved)
            run.emit(
                stage="epoch",
                epoch=epoch + 1,
                epochs=config.epochs,
                loss=train_loss,
                val_loss=eval_loss,
                metrics=metrics,
            )
            if progress.stopped_early:
                run.say(
                    f"[yellow]early stop[/]: no improvement of {data.monitor} for {config.patience} epochs"
                )


def _train_epoch(
    run: _Run, loaders: _Loaders, model: PilotModel, opt: _Optimization, epoch: int, bar: Progress | None
) -> torch.Tensor:
    """One pass over the training data; returns the loss sum and sample count over all ranks."""
    config, backend = run.config, run.backend
    steps = len(loaders.train)
    t0 = time.monotonic()
    loaders.train_sampler.set_epoch(epoch)
    torch.manual_seed(config.seed * 1_000_003 + epoch * 1009 + backend.rank)
    opt.net.train()
    task = (
        bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=steps, loss=0.0, ips=0.0)
        if bar is not None
        else None
    )
    loss_sum = torch.zeros(2, dtype=torch.float64)
    for step, (x, y, w) in enumerate(loaders.train):
        outputs = opt.net(x)
        loss = model.loss(outputs, y, w if config.weighting == "loss" else None)
        opt.optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.optimizer.step()
        opt.scheduler.step()
        loss_sum[0] += float(loss.detach()) * x.shape[0]
        loss_sum[1] += x.shape[0]
        mean = float(loss_sum[0] / loss_sum[1])
        if bar is not None and task is not None:
            ips = float(loss_sum[1]) * backend.world / max(1e-9, time.monotonic() - t0)
            bar.update(task, advance=1, loss=mean, ips=ips)
        run.emit(
            stage="train", epoch=epoch, epochs=config.epochs, step=step + 1, total_steps=steps, loss=mean
        )
    _sync_buffers(model, backend)
    totals: torch.Tensor = backend.all_sum(loss_sum)
    return totals


def _save_epoch(
    run: _Run, data: _Data, model: PilotModel, opt: _Optimization, progress: _Progress, improved: bool
) -> None:
    """Rank 0: ``last.pt`` (and ``best.pt`` on improvement), the metrics line, the console line."""
    config, entry = run.config, progress.history[-1]
    state = {
        "version": CHECKPOINT_VERSION,
        "architecture": config.architecture,
        "options": model.options.model_dump(mode="json"),
        "card": model.card().model_dump(mode="json"),
        "model": model.state_dict(),
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "epoch": entry.epoch,
        "best_loss": progress.best_loss,
        "best_epoch": progress.best_epoch,
        "bad_epochs": progress.bad_epochs,
        "history": [h.model_dump() for h in progress.history],
        "config": config.model_dump(mode="json"),
        "train_sessions": [r.to_dict() for r in data.train_refs],
        "val_sessions": [r.to_dict() for r in data.val_refs],
    }
    if improved:
        _save_checkpoint(run.ckpt_dir / "best.pt", state)
    _save_checkpoint(run.ckpt_dir / "last.pt", state)
    with open(run.run_dir / "metrics.jsonl", "a") as fh:
        fh.write(entry.model_dump_json() + "\n")
    _print_epoch(run.console, entry, data.monitor, improved)


def training_input_stats(
    table: FrameTable, limit: int = 400, model: PilotModel | None = None
) -> InputStats | None:
    """The input statistics of (an even sample of at most ``limit``) training frames, for the card;
    with ``model``, also its feature values on the same frames, preprocessed as the car does (a
    model of stacked frames gets none: a sample of single frames is not what it sees)."""
    acc = InputStatsAccumulator()
    n = len(table)
    images = [table.image(int(i)) for i in (np.linspace(0, n - 1, min(n, limit)).astype(int) if n else [])]
    for image in images:
        acc.add(image)
    stats = acc.stats()
    if stats is None or model is None or model.spec.frame_count != 1:
        return stats
    return stats.model_copy(update={"features": training_feature_stats(model, images)})


def training_feature_stats(
    model: PilotModel, images: list[np.ndarray], batch: int = 64
) -> FeatureStats | None:
    """The model's feature values on camera images (preprocessed as the car does), summarised."""
    acc = FeatureStatsAccumulator()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                x = np.stack([preprocess(im, model.spec) for im in images[start : start + batch]])
                for row in model.feature_values(torch.from_numpy(x).to(device)).cpu().numpy():
                    acc.add(row)
    finally:
        model.train(was_training)
    return acc.stats()


def _result(run: _Run, data: _Data, model: PilotModel, progress: _Progress, started: float) -> TrainResult:
    config, backend, history = run.config, run.backend, progress.history
    best_epoch = progress.best_epoch
    # The card's feature statistics are those of the weights that get exported: the best epoch's.
    # Only rank 0's result is kept (it writes result.json), so only rank 0 computes them.
    best = run.ckpt_dir / "best.pt"
    exported = (load_checkpoint(best)[0] if best.exists() else model) if backend.is_main else None
    final_metrics = history[best_epoch - 1].metrics if 0 < best_epoch <= len(history) else {}
    training = {
        "sessions": [r.to_dict() for r in data.train_refs],
        "val_sessions": [r.to_dict() for r in data.val_refs],
        "epochs": len(history),
        "best_epoch": best_epoch,
        "seed": config.seed,
        "metrics": final_metrics,
        "job": config.job,
    }
    return TrainResult(
        run_dir=str(run.run_dir),
        architecture=config.architecture,
        card=model.card().model_copy(
            update={
                "training": training,
                "input_stats": training_input_stats(data.train_table, model=exported),
            }
        ),
        launcher=backend.name,
        world=backend.world,
        epochs_run=len(history),
        best_epoch=best_epoch,
        best_loss=progress.best_loss,
        monitor=data.monitor,
        stopped_early=progress.stopped_early,
        history=history,
        metrics=final_metrics,
        data_report=data.report.to_dict(),
        train_sessions=data.train_refs,
        val_sessions=data.val_refs,
        train_frames=len(data.train_table),
        val_frames=len(data.val_table) if data.val_table is not None else 0,
        checkpoint=str(run.ckpt_dir / "best.pt"),
        weights_sha256=backend.gather_object(weights_digest(model)),
        duration_s=time.monotonic() - started,
    )


def _sync_buffers(model: torch.nn.Module, backend: Backend) -> None:
    """Average floating-point buffers (batch-norm statistics) so every rank holds the same model.

    DDP broadcasts rank 0's buffers before each forward, but the last training step still updates
    each rank's own statistics; Horovod does not touch buffers at all.
    """
    if backend.world == 1:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            buf.copy_(backend.all_sum(buf) / backend.world)


@torch.no_grad()
def evaluate_loader(
    model: PilotModel, loader: DataLoader[Any], backend: Backend | None = None
) -> tuple[float, dict[str, float]]:
    """Unweighted loss and metrics of ``model`` over ``loader``, summed over every process."""
    backend = backend or Backend()
    model.eval()
    acc = _Accumulator(model)
    for x, y, _w in loader:
        outputs = model(x)
        acc.add(model, outputs, y, float(model.loss(outputs, y)))
    return acc.result(backend)


def _print_epoch(console: Console, m: EpochMetrics, monitor: str, improved: bool) -> None:
    parts = [f"epoch {m.epoch:3d}", f"lr {m.lr:.2e}", f"train {m.train_loss:.4f}"]
    if m.val_loss is not None:
        parts.append(f"val {m.val_loss:.4f}")
    parts += [f"{k} {v:.3f}" for k, v in m.metrics.items()]
    parts.append(f"{m.images_per_s:.0f} img/s")
    console.print(("[green]★[/] " if improved else "  ") + " · ".join(parts))


def predict_table(
    model: PilotModel, table: FrameTable, batch_size: int = 256
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Predicted and true actions ``[N, outputs]`` for every frame of ``table`` (no augmentation)."""
    ds = DrivingDataset(table, model.spec)
    loader = ds.loader(batch_size)
    preds, trues = [], []
    model.eval()
    with torch.no_grad():
        for x, y, _w in loader:
            preds.append(model.decode(model(x)).numpy())
            idx = [ACTION_INDEX[s.name] for s in model.output_specs()]
            trues.append(y[:, idx].numpy())
    if not preds:
        n = len(model.output_specs())
        return np.zeros((0, n)), np.zeros((0, n))
    return np.concatenate(preds), np.concatenate(trues)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, allow_nan=False).encode())
