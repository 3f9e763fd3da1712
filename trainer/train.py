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
from schemas.messages import JobProgress, SessionRef
from schemas.model_card import ModelCard
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
from trainer.progress import MqttProgress, NullSink, ProgressSink

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
            MqttProgress(config.broker, config.job, config.job_kind, config.topic_prefix)
            if config.broker and config.job and backend.is_main
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


def _fit(
    config: TrainConfig, backend: Backend, sink: ProgressSink, console: Console, started: float
) -> TrainResult:
    run_dir = Path(config.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    if backend.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads or default_threads(backend.local_world))
    # Tiny gradients and optimizer moments become denormal floats, which are ~10× slower on CPUs.
    torch.set_flush_denormal(True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(config.seed)
    show = config.progress_bar and backend.is_main

    # --- data -----------------------------------------------------------------------------------
    _emit(sink, config, backend, stage="loading", message="reading shards")
    train_refs, val_refs = _resolve_sessions(config, backend)
    if not train_refs:
        raise ValueError(f"no training sessions found in {config.store}")
    store = open_store(config.store)
    table = load_frames(store, train_refs + val_refs, cache_pixels_mb=config.cache_pixels_mb)
    report: LoadReport = table.report
    train_table = table.subset(train_refs)
    val_table = table.subset(val_refs) if val_refs else None
    if len(train_table) == 0:
        raise ValueError(f"no usable frames in the training sessions: {report.summary()}")
    if backend.is_main:
        console.print(f"[bold]data[/]: {report.summary()}")
        console.print(
            f"  train {len(train_table)} frames ({len(train_refs)} sessions), "
            f"val {len(val_table) if val_table else 0} frames ({len(val_refs)} sessions)"
        )
        if not val_refs:
            console.print("  [yellow]one session only: no validation split; monitoring the training loss[/]")

    model = build_model(config.architecture, config.model)
    spec = model.spec
    weights = steering_weights(train_table.actions[:, 0]) if config.weighting != "none" else None
    train_ds = DrivingDataset(
        train_table,
        spec,
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
    eval_table = val_table if val_table is not None and len(val_table) else train_table
    eval_ds = DrivingDataset(eval_table, spec, cache_mb=config.cache_pixels_mb)
    eval_sampler = EpochSampler(
        len(eval_ds), shuffle=False, rank=backend.rank, world=backend.world, pad=False
    )
    # Loaders get their own generator: drawing their base seed from the global one would shift
    # the dropout stream depending on whether workers persist across epochs.
    loader_args: dict[str, Any] = {
        "num_workers": config.loader_workers,
        "generator": torch.Generator().manual_seed(config.seed),
    }
    if config.loader_workers and "jax" in sys.modules:
        # JAX (loaded by the TFLite converter) runs threads that a forked worker could deadlock on.
        loader_args["multiprocessing_context"] = "forkserver"
    if config.loader_workers:
        # The sampler runs here and hands each worker its keys (with their augmentation draws), so
        # workers can live across epochs.
        loader_args["persistent_workers"] = True
    train_loader = train_ds.loader(config.batch_size, train_sampler, **loader_args)
    eval_loader = eval_ds.loader(max(config.batch_size, 128), eval_sampler, **loader_args)
    steps_per_epoch = len(train_loader)

    # --- model, optimizer, schedule, resume -----------------------------------------------------
    optimizer: torch.optim.Optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    total_steps = steps_per_epoch * config.epochs
    warmup = min(round(config.warmup_epochs * steps_per_epoch), total_steps // 2)
    history: list[EpochMetrics] = []
    start_epoch = 0
    best_loss, best_epoch, bad_epochs = math.inf, -1, 0
    last_path = ckpt_dir / "last.pt"
    resume_state = None
    if config.resume and backend.is_main and last_path.exists():
        resume_state = torch.load(last_path, map_location="cpu", weights_only=False)
    resume_state = backend.broadcast_object(resume_state) if backend.world > 1 else resume_state
    if resume_state is not None:
        if resume_state.get("architecture") != config.architecture:
            raise ValueError(
                f"{last_path} holds a {resume_state.get('architecture')!r} model, the config asks for "
                f"{config.architecture!r}; use another run_dir or resume=false"
            )
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        start_epoch = int(resume_state["epoch"])
        best_loss = float(resume_state["best_loss"])
        best_epoch = int(resume_state["best_epoch"])
        bad_epochs = int(resume_state["bad_epochs"])
        history = [EpochMetrics.model_validate(h) for h in resume_state["history"]]
        if backend.is_main:
            console.print(f"[bold]resuming[/] {last_path} after epoch {start_epoch}")
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

    monitor = "val_loss" if val_refs and val_table is not None and len(val_table) else "train_eval_loss"
    stopped_early = bad_epochs >= config.patience
    epoch = start_epoch
    _emit(
        sink,
        config,
        backend,
        stage="train",
        epoch=start_epoch,
        epochs=config.epochs,
        step=0,
        total_steps=steps_per_epoch,
    )
    with _progress_bar(show, console) as bar:
        for epoch in range(start_epoch, config.epochs):
            if stopped_early:
                break
            t0 = time.monotonic()
            train_sampler.set_epoch(epoch)
            torch.manual_seed(config.seed * 1_000_003 + epoch * 1009 + backend.rank)
            net.train()
            task = (
                bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=steps_per_epoch, loss=0.0, ips=0.0)
                if bar is not None
                else None
            )
            loss_sum = torch.zeros(2, dtype=torch.float64)
            seen = 0
            for step, (x, y, w) in enumerate(train_loader):
                outputs = net(x)
                loss = model.loss(outputs, y, w if config.weighting == "loss" else None)
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                scheduler.step()
                loss_sum[0] += float(loss.detach()) * x.shape[0]
                loss_sum[1] += x.shape[0]
                seen += x.shape[0]
                ips = seen * backend.world / max(1e-9, time.monotonic() - t0)
                if bar is not None and task is not None:
                    bar.update(task, advance=1, loss=float(loss_sum[0] / loss_sum[1]), ips=ips)
                _emit(
                    sink,
                    config,
                    backend,
                    stage="train",
                    epoch=epoch,
                    epochs=config.epochs,
                    step=step + 1,
                    total_steps=steps_per_epoch,
                    loss=float(loss_sum[0] / loss_sum[1]),
                )
            _sync_buffers(model, backend)
            totals = backend.all_sum(loss_sum)
            train_loss = float(totals[0] / max(1.0, float(totals[1])))
            train_time = time.monotonic() - t0
            images_per_s = float(totals[1]) / max(1e-9, train_time)

            eval_loss, metrics = evaluate_loader(model, eval_loader, backend)
            monitored = eval_loss
            entry = EpochMetrics(
                epoch=epoch + 1,
                lr=float(scheduler.get_last_lr()[0]),
                train_loss=train_loss,
                val_loss=eval_loss if monitor == "val_loss" else None,
                metrics=metrics,
                duration_s=time.monotonic() - t0,
                images_per_s=images_per_s,
            )
            history.append(entry)
            improved = monitored < best_loss - config.min_delta
            if improved:
                best_loss, best_epoch, bad_epochs = monitored, epoch + 1, 0
            else:
                bad_epochs += 1
            stopped_early = bad_epochs >= config.patience and epoch + 1 < config.epochs
            if backend.is_main:
                state = {
                    "version": CHECKPOINT_VERSION,
                    "architecture": config.architecture,
                    "options": model.options.model_dump(mode="json"),
                    "card": model.card().model_dump(mode="json"),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "best_loss": best_loss,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "history": [h.model_dump() for h in history],
                    "config": config.model_dump(mode="json"),
                    "train_sessions": [r.to_dict() for r in train_refs],
                    "val_sessions": [r.to_dict() for r in val_refs],
                }
                if improved:
                    _save_checkpoint(ckpt_dir / "best.pt", state)
                _save_checkpoint(last_path, state)
                with open(run_dir / "metrics.jsonl", "a") as fh:
                    fh.write(entry.model_dump_json() + "\n")
                _print_epoch(console, entry, monitor, improved)
            _emit(
                sink,
                config,
                backend,
                stage="epoch",
                epoch=epoch + 1,
                epochs=config.epochs,
                loss=train_loss,
                val_loss=eval_loss,
                metrics=metrics,
            )
            if stopped_early and backend.is_main:
                console.print(
                    f"[yellow]early stop[/]: no improvement of {monitor} for {config.patience} epochs"
                )

    digests = backend.gather_object(weights_digest(model))
    best_path = ckpt_dir / "best.pt"
    best_card = model.card()
    final_metrics = history[best_epoch - 1].metrics if 0 < best_epoch <= len(history) else {}
    result = TrainResult(
        run_dir=str(run_dir),
        architecture=config.architecture,
        card=best_card.model_copy(
            update={
                "training": {
                    "sessions": [r.to_dict() for r in train_refs],
                    "val_sessions": [r.to_dict() for r in val_refs],
                    "epochs": len(history),
                    "best_epoch": best_epoch,
                    "seed": config.seed,
                    "metrics": final_metrics,
                    "job": config.job,
                }
            }
        ),
        launcher=backend.name,
        world=backend.world,
        epochs_run=len(history),
        best_epoch=best_epoch,
        best_loss=best_loss,
        monitor=monitor,
        stopped_early=stopped_early,
        history=history,
        metrics=final_metrics,
        data_report=report.to_dict(),
        train_sessions=train_refs,
        val_sessions=val_refs,
        train_frames=len(train_table),
        val_frames=len(val_table) if val_table is not None else 0,
        checkpoint=str(best_path),
        weights_sha256=digests,
        duration_s=time.monotonic() - started,
    )
    if backend.is_main:
        result.save(run_dir / "result.json")
        (run_dir / "card.json").write_text(result.card.model_dump_json(indent=2))
    backend.barrier()
    return result


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
