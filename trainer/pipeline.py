"""A whole training job, as ``paddock train train`` and the trainer agent run it:

resolve sessions → train (one process, torchrun or Horovod) → offline metrics and plots on the
validation split → export (ONNX, int8 ONNX, TFLite) with parity checks → optional closed-loop
evaluation in the simulator → upload to ``models/{name}/{version}/`` in the object store → register
with the hub (when one is configured) → a :class:`~schemas.messages.JobResult`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from infra.store import ObjectStore, open_store
from schemas.dataset import model_prefix
from schemas.ids import check_name
from schemas.messages import JobProgress, JobResult, ModelRef, SessionRef, TrainParams
from schemas.model_card import ModelCard
from trainer.data import FrameTable, load_frames, preprocessed_samples
from trainer.distributed import Launcher
from trainer.export import ExportResult, export_all
from trainer.hub_client import HubClient, Lineage
from trainer.launch import launch
from trainer.models import PilotModel
from trainer.progress import ProgressSink, job_sink
from trainer.report import offline_metrics, plot_losses, plot_predictions
from trainer.train import TrainConfig, TrainResult, load_checkpoint, write_json

BC_EXPERIMENT = "behavioural-cloning"

EXPORT_FORMATS = ("onnx", "onnx-int8", "tflite")


class TrainerSettings(BaseModel):
    """Where a trainer finds data and services; the same for every job it runs."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="object store URL: a directory, file://… or s3://bucket/prefix")
    work_dir: str = Field(default="runs", description="local directory for runs")
    broker: str | None = Field(default=None, description="MQTT URL for progress and results")
    topic_prefix: str = "paddock"
    hub: str | None = Field(default=None, description="hub REST API base URL, for registration")
    hub_token: str | None = None
    export_formats: list[str] = Field(default_factory=lambda: list(EXPORT_FORMATS))
    launcher: Launcher | None = Field(default=None, description="overrides the job's launcher")
    workers: int | None = Field(default=None, ge=1, description="overrides the job's worker count")
    hosts: str | None = Field(default=None, description="horovodrun -H, e.g. 'a:2,b:2'")
    progress_bar: bool = True
    mlflow: str | None = Field(
        default=None,
        description="MLflow tracking URI (a server's http://…, sqlite:///…, file:…) the run is logged "
        "to; None: PADDOCK_MLFLOW if set, else not tracked",
    )


def default_version() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def train_config(
    params: TrainParams, settings: TrainerSettings, run_dir: Path, job: str | None
) -> TrainConfig:
    """The :class:`TrainConfig` of a job: its params, plus any TrainConfig field in ``params.options``."""
    values: dict[str, Any] = {
        "store": settings.store,
        "run_dir": str(run_dir),
        "sessions": [s.model_dump() for s in params.sessions],
        "architecture": params.architecture,
        "epochs": params.epochs,
        "batch_size": params.batch_size,
        "learning_rate": params.learning_rate,
        "seed": params.seed,
        "broker": settings.broker,
        "topic_prefix": settings.topic_prefix,
        "job": job,
        "progress_bar": settings.progress_bar,
    }
    reserved = {"store", "run_dir", "job", "broker", "topic_prefix"}
    bad = reserved & set(params.options)
    if bad:
        raise ValueError(f"options may not set {', '.join(sorted(bad))}")
    values.update(params.options)
    try:
        return TrainConfig.model_validate(values)
    except Exception as exc:
        raise ValueError(f"invalid training options: {exc}") from None


def run_train_job(
    params: TrainParams,
    settings: TrainerSettings,
    *,
    job: str | None = None,
    sink: ProgressSink | None = None,
    console: Console | None = None,
    requested_by: str | None = None,
) -> JobResult:
    """Run a whole training job (see the module docstring); raise on failure. ``requested_by`` (why
    the job ran: a person, an MLOps trigger with its figures) goes into the model's lineage."""
    started = time.monotonic()
    console = console or Console(stderr=True)
    name = params.model_name
    version = check_name(params.model_version or default_version(), "model version")
    run_dir = Path(settings.work_dir) / (job or f"{name}-{version}")
    own_sink = sink is None
    sink = sink or job_sink(settings.broker, job, "train", settings.topic_prefix)

    stages = _Stages(console, sink, job)
    try:
        params, val_sessions = _resolve_dataset(params, settings)
        config = train_config(params, settings, run_dir, job)
        if val_sessions is not None:  # a named dataset fixes its own split
            config = config.model_copy(update={"val_sessions": val_sessions})
        launcher: Launcher = settings.launcher or params.launcher
        workers = settings.workers or params.workers
        stages.start(f"training {config.architecture} with {launcher} × {workers}")
        result = launch(config, launcher, workers, hosts=settings.hosts)
        finished = _finish(_Job(params, settings, name, version, run_dir, job, stages, requested_by), result)
        return JobResult(
            job=job or f"{name}-{version}",
            kind="train",
            status="succeeded",
            ts=time.time(),
            model=ModelRef(name=name, version=version),
            artifacts=finished.artifacts,
            metrics=finished.metrics,
            duration_s=time.monotonic() - started,
        )
    finally:
        if own_sink:
            sink.close()


def _resolve_dataset(
    params: TrainParams, settings: TrainerSettings
) -> tuple[TrainParams, list[SessionRef] | None]:
    """A named dataset becomes its sessions, looked up on the hub, and its validation split."""
    if not params.dataset:
        return params, None
    if not settings.hub:
        raise ValueError(f"dataset {params.dataset!r} is a hub name: configure the hub or pass sessions")
    with HubClient(settings.hub, settings.hub_token) as hub:
        manifest = hub.dataset(params.dataset)
    return params.model_copy(update={"sessions": list(manifest.train) + list(manifest.val)}), list(
        manifest.val
    )


class _Stages:
    """The job's stages, one after the other: each is announced, and its duration goes to the report."""

    def __init__(self, console: Console, sink: ProgressSink, job: str | None) -> None:
        self.console = console
        self.sink = sink
        self.job = job
        self.timings: dict[str, float] = {}
        self._current: str | None = None
        self._since = time.monotonic()

    def start(self, text: str | None) -> None:
        """Start the next stage (``None``: the last one ended)."""
        now = time.monotonic()
        if self._current is not None:
            self.timings[self._current] = round(now - self._since, 3)
        self._current, self._since = text, now
        if text is None:
            return
        self.console.print(f"[bold]{text}[/]")
        if self.job:
            progress = JobProgress(job=self.job, kind="train", state="running", stage=text, ts=time.time())
            self.sink.emit(progress)


@dataclass
class _Job:
    """One training job after its training: what the steps of :func:`_finish` share."""

    params: TrainParams
    settings: TrainerSettings
    name: str
    version: str
    run_dir: Path
    job: str | None
    stages: _Stages
    requested_by: str | None = None

    @property
    def console(self) -> Console:
        return self.stages.console

    @property
    def prefix(self) -> str:
        return model_prefix(self.name, self.version)


@dataclass
class _Finished:
    artifacts: dict[str, str]
    metrics: dict[str, float]
    registration: dict[str, Any] | None


@dataclass
class _Offline:
    """The offline evaluation on the validation split (the training split if there is none)."""

    sessions: list[SessionRef]
    table: FrameTable
    metrics: dict[str, Any]
    plots: dict[str, Path]


def _finish(job: _Job, result: TrainResult) -> _Finished:
    """Evaluate, export, drive, report, upload and register the trained model."""
    model, ckpt = load_checkpoint(result.checkpoint)
    store = open_store(job.settings.store)
    offline = _evaluate_offline(job, model, store, result)
    exported = _export(job, model, result.card, offline.table)
    evaluations = _closed_loop(job, model, result.card, exported)
    metrics = _metrics(offline, evaluations)
    report_data = {
        "model": {"name": job.name, "version": job.version},
        "card": result.card.model_dump(mode="json"),
        "training": json.loads(result.model_dump_json(exclude={"card"})),
        "offline": {"sessions": [r.to_dict() for r in offline.sessions], "metrics": offline.metrics},
        "export": {k: v.model_dump(mode="json") for k, v in exported.files.items()},
        "export_errors": exported.errors,
        "closed_loop": evaluations,
    }
    job.stages.start("writing the report")
    write_json(job.run_dir / "report.json", report_data | {"timings_s": job.stages.timings})
    job.stages.start("uploading to the object store")
    artifacts = _upload(job, store, result, exported, offline.plots, evaluations)
    lineage = _lineage(job, result, ckpt, metrics, artifacts, evaluations)
    store.put(job.prefix + "lineage.json", lineage.model_dump_json(indent=2).encode())
    job.stages.start(None)
    write_json(job.run_dir / "report.json", report_data | {"timings_s": job.stages.timings})
    store.put(job.prefix + "report.json", (job.run_dir / "report.json").read_bytes())
    _track(job, result, metrics, exported)
    registration = _register(job, result, exported, lineage) if job.settings.hub else None
    job.console.print(f"[green]model {job.name}:{job.version}[/] → {store.url}/{job.prefix}")
    job.console.print("  " + ", ".join(f"{k}: {v:.1f} s" for k, v in job.stages.timings.items()))
    return _Finished(artifacts, metrics, registration)


def _track(job: _Job, result: TrainResult, metrics: dict[str, float], exported: ExportResult) -> str | None:
    """Log the run to MLflow where one is configured: parameters, each epoch's losses and metrics,
    the final metrics, the report and the exported files (experiment ``behavioural-cloning``), and
    the ONNX file as a new version of the registered model named as the hub's (``job.name``).
    Tracking never fails a training job: a store that cannot be reached is one warning."""
    from trainer.perception.tracking import Tracker, record_quietly

    def record(tracker: Tracker) -> str:
        params = {"model": f"{job.name}:{job.version}", "job": job.params.model_dump(mode="json")}
        with tracker.run(f"{job.name}:{job.version}", params) as run_id:
            for h in result.history:
                losses = {"train_loss": h.train_loss, "lr": h.lr, "images_per_s": h.images_per_s}
                if h.val_loss is not None:
                    losses["val_loss"] = h.val_loss
                tracker.log_metrics(losses | h.metrics, step=h.epoch)
            tracker.log_metrics(metrics)
            for f in exported.files.values():
                tracker.log_artifact(Path(f.path), "model")
            tracker.log_artifact(job.run_dir / "report.json")
            ref = f"{job.name}:{job.version}"
            tracker.set_tags({"paddock.model": ref, "paddock.kind": "train"})
            onnx = exported.files.get("onnx")
            version = tracker.log_onnx(Path(onnx.path), job.name, {"paddock.model": ref}) if onnx else None
        registered = f", registry {job.name} version {version}" if version else ""
        # soft_wrap: a long store URI is not broken across lines (logs are read and grepped)
        line = f"MLflow run {run_id} ({BC_EXPERIMENT} at {tracker.uri}{registered})"
        job.console.print(line, soft_wrap=True)
        return run_id

    return record_quietly(job.settings.mlflow, BC_EXPERIMENT, record)


def _evaluate_offline(job: _Job, model: PilotModel, store: ObjectStore, result: TrainResult) -> _Offline:
    job.stages.start("evaluating on the validation split")
    sessions = result.val_sessions or result.train_sessions
    table = load_frames(store, sessions)
    plots = {
        "loss.png": plot_losses(result.history, job.run_dir / "loss.png", f"{job.name}:{job.version} loss"),
        "predictions.png": plot_predictions(model, table, job.run_dir / "predictions.png"),
    }
    return _Offline(sessions, table, offline_metrics(model, table), plots)


def _export(job: _Job, model: PilotModel, card: ModelCard, table: FrameTable) -> ExportResult:
    formats = job.settings.export_formats
    job.stages.start("exporting " + ", ".join(formats))
    samples = preprocessed_samples(table, model.spec)
    exported = export_all(model, job.run_dir / "export", samples, card=card, formats=formats)
    for fmt, err in exported.errors.items():
        job.console.print(f"[yellow]{fmt} export skipped[/]: {err}")
    return exported


def _closed_loop(
    job: _Job, model: PilotModel, card: ModelCard, exported: ExportResult
) -> list[dict[str, Any]]:
    """Laps in the simulator, when the job asks for them."""
    params = job.params
    if not (params.evaluate_track and params.evaluate_laps > 0):
        return []
    from trainer.evaluate import OnnxPilot, TorchPilot, closed_loop, summary

    job.stages.start(f"closed-loop evaluation: {params.evaluate_laps} laps of {params.evaluate_track}")
    # Drive the exported file the car will load, through the car's preprocessing.
    onnx = exported.files.get("onnx")
    pilot = OnnxPilot(onnx.path, card) if onnx is not None else TorchPilot(model)
    report = closed_loop(
        pilot,
        params.evaluate_track,
        laps=params.evaluate_laps,
        out_dir=job.run_dir / "closed-loop",
        seed=params.seed,
    )
    job.console.print(summary(report))
    return [report.model_dump(mode="json")]


def _metrics(offline: _Offline, evaluations: list[dict[str, Any]]) -> dict[str, float]:
    metrics = {k: v for k, v in offline.metrics.items() if k != "frames"}
    for ev in evaluations:
        metrics["completion_pct"] = float(ev["completion_pct"])
        if ev.get("off_track_count") is not None:  # the evaluation gate compares it
            metrics["off_track_count"] = float(ev["off_track_count"])
        if ev.get("best_lap_time_s") is not None:
            metrics["best_lap_time_s"] = float(ev["best_lap_time_s"])
    return metrics


def _upload(
    job: _Job,
    store: ObjectStore,
    result: TrainResult,
    exported: ExportResult,
    plots: dict[str, Path],
    evaluations: list[dict[str, Any]],
) -> dict[str, str]:
    """Put the model files, card, report, checkpoint, plots and lap files under the model's prefix;
    return the keys by label."""
    prefix = job.prefix
    names = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "tflite": "model.tflite"}
    artifacts: dict[str, str] = {}
    for fmt, f in exported.files.items():
        store.put(prefix + names[fmt], Path(f.path).read_bytes())
        artifacts[fmt] = prefix + names[fmt]
    uploads = {
        "card.json": result.card.model_dump_json(indent=2).encode(),
        "report.json": (job.run_dir / "report.json").read_bytes(),
        "checkpoint.pt": Path(result.checkpoint).read_bytes(),
        **{n: p.read_bytes() for n, p in plots.items()},
    }
    for ev in evaluations:
        for label, path in ev.get("files", {}).items():
            uploads[f"closed-loop/{Path(path).name}"] = Path(path).read_bytes()
            artifacts[f"closed_loop_{label}"] = prefix + f"closed-loop/{Path(path).name}"
    for fname, data in uploads.items():
        store.put(prefix + fname, data)
        artifacts.setdefault(fname.rsplit(".", 1)[0].replace("/", "_"), prefix + fname)
    return artifacts


def _lineage(
    job: _Job,
    result: TrainResult,
    ckpt: dict[str, Any],
    metrics: dict[str, float],
    artifacts: dict[str, str],
    evaluations: list[dict[str, Any]],
) -> Lineage:
    return Lineage(
        dataset=job.params.dataset,
        run=job.run_dir.name,
        job=job.job,
        requested_by=job.requested_by,
        metrics=metrics,
        sessions=result.train_sessions,
        val_sessions=result.val_sessions,
        training={
            "launcher": result.launcher,
            "world": result.world,
            "epochs": result.epochs_run,
            "best_epoch": result.best_epoch,
            "seed": ckpt["config"]["seed"],
            "config": ckpt["config"],
        },
        files=artifacts,
        evaluations=evaluations,
    )


def _register(job: _Job, result: TrainResult, exported: ExportResult, lineage: Lineage) -> dict[str, Any]:
    """Register the model with the hub, which keeps one file per version: the float ONNX model
    (else the TFLite one)."""
    hub_url = job.settings.hub
    assert hub_url is not None
    main = next((f for f in ("onnx", "tflite") if f in exported.files), None)
    if main is None:
        raise ValueError("registering with the hub needs an ONNX or TFLite export")
    job.console.print(f"[bold]registering {job.name}:{job.version} with {hub_url}[/]")
    card = result.card
    with HubClient(hub_url, job.settings.hub_token) as hub:
        return hub.register_model(
            name=job.name,
            version=job.version,
            artifact=Path(exported.files[main].path),
            card=card,
            lineage=lineage,
            report=(job.run_dir / "report.json").read_bytes(),
            description=f"{card.architecture}, {result.epochs_run} epochs, {result.launcher}",
        )
