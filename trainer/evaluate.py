"""Closed-loop evaluation: the model drives the simulated car from its camera, as on the real car.

The model sees only ``world.render()`` and goes through the car's own path: the card's
:func:`~schemas.model_card.preprocess`, the model (torch, or the exported ONNX file the car would
load) and :func:`~schemas.model_card.decode_outputs`. It drives ``laps`` consecutive laps from the
start line; the report carries DeepRacer's metrics — completion %, lap times, off-track count,
episode status — plus the expert driver's lap time on the same track for reference, and the files
people look at: a simtrace CSV (DeepRacer's 19 columns), a video and the driven line on the track map.

By default leaving the track ends the run (status ``off_track``), so "3 laps completed" means three
clean consecutive laps; with ``recover=True`` the car is put back on the centre line and continues,
and every excursion is counted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field
from rich.console import Console

from firmware.sim import ExpertDriver, World, WorldConfig, drive
from firmware.sim.run import RunResult
from firmware.sim.simtrace import SimTraceWriter
from firmware.sim.world import WorldStatus
from infra.store import MissingObject, ObjectStore, open_store
from schemas.dataset import eval_prefix, model_prefix
from schemas.messages import EvaluateParams, JobProgress, JobResult, ModelRef
from schemas.model_card import ModelCard, decode_outputs, preprocess
from trainer.models import PilotModel


class Pilot(Protocol):
    """Camera image in, ``(steering, throttle)`` out."""

    card: ModelCard

    def act(self, image: NDArray[np.uint8]) -> tuple[float, float]: ...


class TorchPilot:
    def __init__(self, model: PilotModel, default_throttle: float = 0.3) -> None:
        import torch

        self._torch = torch
        self.model = model.eval()
        self.card = model.card()
        self.default_throttle = default_throttle
        torch.set_num_threads(1)

    def act(self, image: NDArray[np.uint8]) -> tuple[float, float]:
        x = self._torch.from_numpy(preprocess(image, self.card.input)[None])
        with self._torch.no_grad():
            outputs = self.model(x)
        values = {spec.tensor: out.numpy() for spec, out in zip(self.card.outputs, outputs, strict=True)}
        actions = decode_outputs(self.card, values)
        return actions.get("steering", 0.0), actions.get("throttle", self.default_throttle)


class OnnxPilot:
    """The exported ONNX file, run by ONNX Runtime on one thread — what the car runs."""

    def __init__(
        self, path: str | Path, card: ModelCard | None = None, default_throttle: float = 0.3
    ) -> None:
        from trainer.export import onnx_session

        self.session = onnx_session(path, threads=1)
        if card is None:
            meta = self.session.get_modelmeta().custom_metadata_map
            if "paddock.card" not in meta:
                raise ValueError(f"{path}: no model card given and none in the file's metadata")
            card = ModelCard.model_validate_json(meta["paddock.card"])
        self.card = card
        self.input = self.session.get_inputs()[0].name
        self.names = [o.name for o in self.session.get_outputs()]
        self.default_throttle = default_throttle

    def act(self, image: NDArray[np.uint8]) -> tuple[float, float]:
        x = preprocess(image, self.card.input)[None]
        outputs = self.session.run(None, {self.input: x})
        actions = decode_outputs(self.card, dict(zip(self.names, outputs, strict=True)))
        return actions.get("steering", 0.0), actions.get("throttle", self.default_throttle)


class _EveryNth:
    """Passes every ``n``-th frame on to a video writer (encoding every frame costs more than driving)."""

    def __init__(self, writer: Any, n: int) -> None:
        self.writer, self.n, self.i = writer, max(1, n), 0

    def add(self, image: NDArray[np.uint8], x: float, y: float, hud: str) -> None:
        if self.i % self.n == 0:
            self.writer.add(image, x, y, hud)
        self.i += 1

    def close(self) -> None:
        self.writer.close()


class LapMetrics(BaseModel):
    lap: int
    time_s: float


class ClosedLoopReport(BaseModel):
    """DeepRacer-style evaluation metrics of one run."""

    track: str
    laps_requested: int
    laps_completed: int
    completion_pct: float = Field(description="progress over the requested laps, 0–100")
    episode_status: str = Field(description="lap_complete, off_track, crashed or time_up")
    lap_times: list[LapMetrics]
    best_lap_time_s: float | None
    mean_lap_time_s: float | None
    total_time_s: float
    off_track_count: int
    crashes: int
    steps: int
    expert_lap_time_s: float | None = Field(description="the expert driver's lap on the same track")
    lap_time_vs_expert: float | None = Field(description="best lap time / expert lap time")
    mean_speed: float
    mean_abs_distance_from_center_m: float
    inference_ms_mean: float
    seed: int
    recover: bool
    files: dict[str, str] = Field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.laps_completed >= self.laps_requested


def expert_lap_time(track: str | Any, seed: int = 0) -> float | None:
    """The expert's lap time from a standing start on ``track`` (the reference for a model)."""
    world = World(track, seed=seed)
    expert = ExpertDriver(world.track, world.config.car)
    result = drive(world, lambda w: expert.act(w.state), laps=1, recover=True)
    return result.lap_times[0] if result.lap_times else None


def closed_loop(
    pilot: Pilot | PilotModel,
    track: str,
    *,
    laps: int = 3,
    out_dir: str | Path | None = None,
    seed: int = 0,
    recover: bool = False,
    video: bool = True,
    video_scale: int = 2,
    video_every: int = 2,
    max_time_s: float | None = None,
    console: Console | None = None,
) -> ClosedLoopReport:
    """Let ``pilot`` drive ``laps`` laps of ``track`` from the camera; write files into ``out_dir``.

    The video shows every ``video_every``-th step at ``video_scale`` × the camera's size (the
    defaults, 2 and 2, keep encoding to a few seconds for three laps; 1 and 4 give the full view).
    """
    if isinstance(pilot, PilotModel):
        pilot = TorchPilot(pilot)
    world = World(track, WorldConfig(), seed=seed)
    world.reset(seed)
    out = Path(out_dir) if out_dir is not None else None
    outputs = _Outputs.open(out, world, video, video_scale, video_every)
    inference: list[float] = []
    distances: list[float] = []

    def policy(w: World) -> tuple[float, float]:
        image = w.render()
        t0 = time.perf_counter()
        action = pilot.act(image)
        inference.append((time.perf_counter() - t0) * 1000)
        return action

    def on_step(status: Any) -> None:
        distances.append(abs(status.distance_from_center))

    try:
        result = drive(
            world,
            policy,
            laps=laps,
            max_time_s=max_time_s,
            recover=recover,
            simtrace=outputs.simtrace,
            video=outputs.video,  # type: ignore[arg-type]
            on_step=on_step,
        )
    finally:
        outputs.close()
    report = _report(world, result, laps, seed, recover, outputs.files)
    report = report.model_copy(
        update={
            "mean_abs_distance_from_center_m": float(np.mean(distances)) if distances else 0.0,
            "inference_ms_mean": float(np.mean(inference)) if inference else 0.0,
        }
    )
    if out is not None:
        report = _write_map_and_report(out, world, result, report)
    if console is not None:
        console.print(summary(report))
    return report


@dataclass
class _Outputs:
    """The files a closed-loop run writes as it drives (none without an output directory)."""

    files: dict[str, str]
    simtrace: SimTraceWriter | None = None
    video: _EveryNth | None = None

    @classmethod
    def open(cls, out: Path | None, world: World, video: bool, scale: int, every: int) -> _Outputs:
        if out is None:
            return cls({})
        out.mkdir(parents=True, exist_ok=True)
        outputs = cls({"simtrace": str(out / "simtrace.csv")}, SimTraceWriter(out / "simtrace.csv"))
        if video:
            from firmware.sim.media import VideoWriter

            writer = VideoWriter(out / "run.mp4", world.track, fps=1 / (world.dt * every), scale=scale)
            outputs.video = _EveryNth(writer, every)
            outputs.files["video"] = str(out / "run.mp4")
        return outputs

    def close(self) -> None:
        if self.simtrace is not None:
            self.simtrace.close()
        if self.video is not None:
            self.video.close()


def _episode_status(result: RunResult, status: WorldStatus, recover: bool) -> str:
    if result.finished:
        return "lap_complete"
    if status.crashed:
        return "crashed"
    if status.off_track or (result.off_track and not recover):
        return "off_track"
    return "time_up"


def _report(
    world: World, result: RunResult, laps: int, seed: int, recover: bool, files: dict[str, str]
) -> ClosedLoopReport:
    status = world.status
    partial = 0.0 if result.finished else max(0.0, min(100.0, status.progress)) / 100.0
    completion = 100.0 * min(1.0, (result.laps + partial) / laps)
    expert_time = expert_lap_time(world.track, seed)
    best = result.best_lap
    return ClosedLoopReport(
        track=world.track.name,
        laps_requested=laps,
        laps_completed=result.laps,
        completion_pct=round(completion, 2),
        episode_status=_episode_status(result, status, recover),
        lap_times=[LapMetrics(lap=i + 1, time_s=t) for i, t in enumerate(result.lap_times)],
        best_lap_time_s=best,
        mean_lap_time_s=float(np.mean(result.lap_times)) if result.lap_times else None,
        total_time_s=result.sim_time,
        off_track_count=result.off_track,
        crashes=result.crashes,
        steps=result.steps,
        expert_lap_time_s=expert_time,
        lap_time_vs_expert=(best / expert_time) if best and expert_time else None,
        mean_speed=float(np.mean(result.speeds)) if len(result.speeds) else 0.0,
        mean_abs_distance_from_center_m=0.0,  # the caller measured these two while driving
        inference_ms_mean=0.0,
        seed=seed,
        recover=recover,
        files=files,
    )


def _write_map_and_report(
    out: Path, world: World, result: RunResult, report: ClosedLoopReport
) -> ClosedLoopReport:
    from firmware.sim.media import plot_track_map

    best = report.best_lap_time_s
    title = (
        f"{report.track}: {report.laps_completed}/{report.laps_requested} laps, {report.completion_pct:.0f}% "
        f"({report.episode_status})" + (f", best lap {best:.2f} s" if best else "")
    )
    plot_track_map(world.track, out / "map.png", trace=result.trace, speeds=result.speeds, title=title)
    report = report.model_copy(update={"files": {**report.files, "map": str(out / "map.png")}})
    (out / "report.json").write_text(report.model_dump_json(indent=2))
    return report


def summary(report: ClosedLoopReport) -> str:
    laps = ", ".join(f"{lap.time_s:.2f} s" for lap in report.lap_times) or "none"
    expert = f"; expert lap {report.expert_lap_time_s:.2f} s" if report.expert_lap_time_s else ""
    ratio = f" (×{report.lap_time_vs_expert:.2f})" if report.lap_time_vs_expert else ""
    return (
        f"{report.track}: {report.laps_completed}/{report.laps_requested} laps, completion "
        f"{report.completion_pct:.1f}%, status {report.episode_status}, off track {report.off_track_count}; "
        f"lap times {laps}{ratio}{expert}"
    )


# --- evaluate jobs -------------------------------------------------------------------------------
def run_evaluate_job(
    params: EvaluateParams, settings: Any, *, job: str | None = None, console: Console | None = None
) -> JobResult:
    """An ``evaluate`` job: fetch ``models/{name}/{version}/model.onnx`` (and card) from the store,
    drive ``params.laps`` laps of ``params.track``, upload the report to ``evals/{job}/``."""
    from trainer.progress import job_sink

    started = time.monotonic()
    console = console or Console(stderr=True)
    store = open_store(settings.store)
    eval_id = job or f"{params.model_name}-{params.model_version}-{params.track}"
    work = Path(settings.work_dir) / eval_id
    work.mkdir(parents=True, exist_ok=True)
    model_path = work / "model.onnx"
    card = _fetch_model(store, settings, params, model_path)
    sink = job_sink(settings.broker, job, "evaluate", settings.topic_prefix)
    try:
        if job:
            sink.emit(JobProgress(job=job, kind="evaluate", state="running", stage="driving", ts=time.time()))
        recover = bool(params.options.get("recover", False))
        report = closed_loop(
            OnnxPilot(model_path, card),
            params.track,
            laps=params.laps,
            out_dir=work,
            seed=params.seed,
            recover=recover,
            video=bool(params.options.get("video", True)),
            console=console,
        )
    finally:
        sink.close()
    artifacts = _upload_evaluation(store, eval_id, report, work)
    metrics = _evaluation_metrics(report)
    (work / "summary.json").write_text(json.dumps(metrics))
    return JobResult(
        job=eval_id,
        kind="evaluate",
        status="succeeded",
        ts=time.time(),
        model=ModelRef(name=params.model_name, version=params.model_version),
        artifacts=artifacts,
        metrics=metrics,
        duration_s=time.monotonic() - started,
    )


def _fetch_model(store: ObjectStore, settings: Any, params: EvaluateParams, model_path: Path) -> ModelCard:
    """Write the ONNX model to ``model_path`` and return its card: from the store, else the hub."""
    prefix = model_prefix(params.model_name, params.model_version)
    try:
        model_path.write_bytes(store.get(prefix + "model.onnx"))
        return ModelCard.model_validate_json(store.get(prefix + "card.json"))
    except MissingObject:
        if not settings.hub:
            raise
    # Not in this trainer's store: ask the hub (its own store may be elsewhere).
    from trainer.hub_client import HubClient

    with HubClient(settings.hub, settings.hub_token) as hub:
        entry = hub.model(params.model_name, params.model_version)
        if entry.get("format") != "onnx":
            raise ValueError(f"{params.model_name}:{params.model_version} is {entry.get('format')}, not ONNX")
        model_path.write_bytes(hub.artifact(params.model_name, params.model_version))
    return ModelCard.model_validate(entry["card"])


def _upload_evaluation(
    store: ObjectStore, eval_id: str, report: ClosedLoopReport, work: Path
) -> dict[str, str]:
    artifacts: dict[str, str] = {}
    out_prefix = eval_prefix(eval_id)
    for label, path in {**report.files, "report": str(work / "report.json")}.items():
        key = out_prefix + Path(path).name
        store.put(key, Path(path).read_bytes())
        artifacts[label] = key
    return artifacts


def _evaluation_metrics(report: ClosedLoopReport) -> dict[str, float]:
    metrics = {
        "completion_pct": report.completion_pct,
        "laps_completed": float(report.laps_completed),
        "off_track_count": float(report.off_track_count),
    }
    if report.best_lap_time_s is not None:
        metrics["best_lap_time_s"] = report.best_lap_time_s
    if report.lap_time_vs_expert is not None:
        metrics["lap_time_vs_expert"] = report.lap_time_vs_expert
    return metrics
