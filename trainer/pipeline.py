"""A whole training job, as ``paddock train train`` and the trainer agent run it:

resolve sessions → train (one process, torchrun or Horovod) → offline metrics and plots on the
validation split → export (ONNX, int8 ONNX, TFLite) with parity checks → optional closed-loop
evaluation in the simulator → upload to ``models/{name}/{version}/`` in the object store → register
with the hub (when one is configured) → a :class:`~schemas.messages.JobResult`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from infra.store import open_store
from schemas.dataset import model_prefix
from schemas.ids import check_name
from schemas.messages import JobProgress, JobResult, ModelRef, SessionRef, TrainParams
from trainer.data import load_frames, preprocessed_samples
from trainer.distributed import Launcher
from trainer.export import export_all
from trainer.hub_client import HubClient, Lineage
from trainer.launch import launch
from trainer.progress import MqttProgress, NullSink, ProgressSink
from trainer.report import offline_metrics, plot_losses, plot_predictions
from trainer.train import TrainConfig, TrainResult, load_checkpoint, write_json

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
) -> JobResult:
    """Run a whole training job (see the module docstring); raise on failure."""
    started = time.monotonic()
    console = console or Console(stderr=True)
    name = params.model_name
    version = check_name(params.model_version or default_version(), "model version")
    run_dir = Path(settings.work_dir) / (job or f"{name}-{version}")
    own_sink = sink is None
    sink = sink or (
        MqttProgress(settings.broker, job, "train", settings.topic_prefix)
        if settings.broker and job
        else NullSink()
    )

    timings: dict[str, float] = {}
    current: list[Any] = [None, time.monotonic()]

    def stage(text: str | None, **fields: Any) -> None:
        """Start the next stage (``None``: the last one ended); the time of each goes to the report."""
        now = time.monotonic()
        if current[0] is not None:
            timings[current[0]] = round(now - current[1], 3)
        current[0], current[1] = text, now
        if text is None:
            return
        console.print(f"[bold]{text}[/]")
        if job:
            progress = JobProgress(
                job=job, kind="train", state="running", stage=text, ts=time.time(), **fields
            )
            sink.emit(progress)

    try:
        params, val_sessions = _resolve_dataset(params, settings)
        config = train_config(params, settings, run_dir, job)
        if val_sessions is not None:  # a named dataset fixes its own split
            config = config.model_copy(update={"val_sessions": val_sessions})
        launcher: Launcher = settings.launcher or params.launcher
        workers = settings.workers or params.workers
        stage(f"training {config.architecture} with {launcher} × {workers}")
        result = launch(config, launcher, workers, hosts=settings.hosts)
        artifacts, metrics, _registration = _finish(
            result, params, settings, name, version, run_dir, job, stage, console, timings
        )
        return JobResult(
            job=job or f"{name}-{version}",
            kind="train",
            status="succeeded",
            ts=time.time(),
            model=ModelRef(name=name, version=version),
            artifacts=artifacts,
            metrics=metrics,
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


def _finish(
    result: TrainResult,
    params: TrainParams,
    settings: TrainerSettings,
    name: str,
    version: str,
    run_dir: Path,
    job: str | None,
    stage: Any,
    console: Console,
    timings: dict[str, float],
) -> tuple[dict[str, str], dict[str, float], dict[str, Any] | None]:
    model, ckpt = load_checkpoint(result.checkpoint)
    store = open_store(settings.store)
    card = result.card
    # --- offline metrics and plots on the validation split (the training split if there is none) --
    stage("evaluating on the validation split")
    eval_refs = result.val_sessions or result.train_sessions
    table = load_frames(store, eval_refs)
    offline = offline_metrics(model, table)
    plots = {
        "loss.png": plot_losses(result.history, run_dir / "loss.png", f"{name}:{version} loss"),
        "predictions.png": plot_predictions(model, table, run_dir / "predictions.png"),
    }
    # --- export -----------------------------------------------------------------------------------
    stage("exporting " + ", ".join(settings.export_formats))
    exported = export_all(
        model,
        run_dir / "export",
        preprocessed_samples(table, model.spec),
        card=card,
        formats=settings.export_formats,
    )
    for fmt, err in exported.errors.items():
        console.print(f"[yellow]{fmt} export skipped[/]: {err}")
    # --- closed loop in the simulator ---------------------------------------------------------------
    evaluations: list[dict[str, Any]] = []
    if params.evaluate_track and params.evaluate_laps > 0:
        from trainer.evaluate import OnnxPilot, TorchPilot, closed_loop, summary

        stage(f"closed-loop evaluation: {params.evaluate_laps} laps of {params.evaluate_track}")
        # Drive the exported file the car will load, through the car's preprocessing.
        pilot = (
            OnnxPilot(exported.files["onnx"].path, card) if "onnx" in exported.files else TorchPilot(model)
        )
        report = closed_loop(
            pilot,
            params.evaluate_track,
            laps=params.evaluate_laps,
            out_dir=run_dir / "closed-loop",
            seed=params.seed,
        )
        console.print(summary(report))
        evaluations.append(report.model_dump(mode="json"))
    # --- report -----------------------------------------------------------------------------------
    metrics = {k: v for k, v in offline.items() if k != "frames"}
    for ev in evaluations:
        metrics["completion_pct"] = float(ev["completion_pct"])
        if ev.get("best_lap_time_s") is not None:
            metrics["best_lap_time_s"] = float(ev["best_lap_time_s"])
    report_data = {
        "model": {"name": name, "version": version},
        "card": card.model_dump(mode="json"),
        "training": json.loads(result.model_dump_json(exclude={"card"})),
        "offline": {"sessions": [r.to_dict() for r in eval_refs], "metrics": offline},
        "export": {k: v.model_dump(mode="json") for k, v in exported.files.items()},
        "export_errors": exported.errors,
        "closed_loop": evaluations,
    }
    stage("writing the report")
    report_data["timings_s"] = timings
    write_json(run_dir / "report.json", report_data)
    # --- upload -----------------------------------------------------------------------------------
    stage("uploading to the object store")
    prefix = model_prefix(name, version)
    names = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "tflite": "model.tflite"}
    artifacts: dict[str, str] = {}
    for fmt, f in exported.files.items():
        key = prefix + names[fmt]
        store.put(key, Path(f.path).read_bytes())
        artifacts[fmt] = key
    uploads = {
        "card.json": card.model_dump_json(indent=2).encode(),
        "report.json": (run_dir / "report.json").read_bytes(),
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
    lineage = Lineage(
        dataset=params.dataset,
        run=run_dir.name,
        job=job,
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
    store.put(prefix + "lineage.json", lineage.model_dump_json(indent=2).encode())
    stage(None)
    write_json(run_dir / "report.json", report_data | {"timings_s": timings})
    store.put(prefix + "report.json", (run_dir / "report.json").read_bytes())
    registration: dict[str, Any] | None = None
    if settings.hub:
        # The hub keeps one file per version: the float ONNX model (else the TFLite one).
        main = next((f for f in ("onnx", "tflite") if f in exported.files), None)
        if main is None:
            raise ValueError("registering with the hub needs an ONNX or TFLite export")
        console.print(f"[bold]registering {name}:{version} with {settings.hub}[/]")
        with HubClient(settings.hub, settings.hub_token) as hub:
            registration = hub.register_model(
                name=name,
                version=version,
                artifact=Path(exported.files[main].path),
                card=card,
                lineage=lineage,
                report=(run_dir / "report.json").read_bytes(),
                description=f"{card.architecture}, {result.epochs_run} epochs, {result.launcher}",
            )
    console.print(f"[green]model {name}:{version}[/] → {store.url}/{prefix}")
    console.print("  " + ", ".join(f"{k}: {v:.1f} s" for k, v in timings.items()))
    return artifacts, metrics, registration
