"""Train to race: an expert that follows an optimised line records sessions, a model is trained on
them like on any other recording, and it drives laps from the camera in the simulator.

    line = optimize(...)                       # trainer.race.result
    sessions = record_race_sessions(store, track, line, sessions=4)
    result = train_race_model(store_url, work_dir, sessions, track)   # a JobResult, ONNX exported
    laps = race_laps(onnx_path, track, laps=10)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from firmware.sim.track import Track
from infra.store import ObjectStore
from schemas.dataset import SessionManifest
from schemas.messages import JobResult, SessionRef
from trainer.quickstart import Recipe
from trainer.race.driver import RaceLineDriver
from trainer.race.line import LapEstimate
from trainer.record import RecordConfig, record_expert

# The demo's recipe with more epochs: lapping at twice the expert's speed asks more of the model.
RACE_RECIPE = Recipe(epochs=24, sessions=4, laps_per_session=2.0, evaluate_laps=0)


def record_race_sessions(
    store: ObjectStore,
    track: Track,
    line: LapEstimate,
    *,
    sessions: int = 4,
    laps: float = 2.0,
    seed: int = 0,
) -> list[SessionManifest]:
    """Record ``sessions`` sessions of the line-following expert (with the recorder's steering noise,
    so the model also sees how to come back to the line)."""
    driver = RaceLineDriver(track, line.points, line.speeds)
    config = RecordConfig(laps=laps, max_speed=float(line.speeds.max()))
    return record_expert(
        store, track_ref(track), sessions=sessions, prefix="race", seed=seed, config=config, expert=driver
    )


def train_race_model(
    store_url: str,
    work_dir: str | Path,
    manifests: list[SessionManifest],
    recipe: Recipe = RACE_RECIPE,
    *,
    model_version: str | None = None,
    console: Console | None = None,
) -> JobResult:
    """Train and export (ONNX) a pilot on the recorded race sessions."""
    from trainer.pipeline import TrainerSettings, run_train_job

    params = recipe.train_params(model_name="race-pilot", model_version=model_version).model_copy(
        update={"sessions": [SessionRef(car=m.car, session=m.session) for m in manifests]}
    )
    settings = TrainerSettings(store=store_url, work_dir=str(work_dir), export_formats=["onnx"])
    return run_train_job(params, settings, console=console)


@dataclass(frozen=True, slots=True)
class RaceLaps:
    lap_times: list[float]
    off_track: int
    finished: bool


def race_laps(onnx_path: str | Path, track: Track, laps: int = 10, seed: int = 0) -> RaceLaps:
    """The exported model drives ``laps`` laps from the camera, as on the car (ONNX Runtime)."""
    from trainer.evaluate import OnnxPilot, closed_loop

    report = closed_loop(
        OnnxPilot(onnx_path), track_ref(track), laps=laps, seed=seed, video=False, recover=True
    )
    return RaceLaps(
        lap_times=[lap.time_s for lap in report.lap_times],
        off_track=report.off_track_count,
        finished=report.completed,
    )


def track_ref(track: Track) -> str:
    """What names ``track`` to the recorder and the evaluator: its file, or a built-in's name."""
    return track.source if Path(track.source).is_file() else track.name
