"""The quick path from nothing to a car that laps: record the expert in the simulator, train, drive.

:data:`DEMO` is the recipe ``paddock demo`` uses. It was chosen to learn to lap quickly on a
2-core CPU: the MobileNet-style model (the default, fastest at inference) on an 80×40 input (the
camera's 160×120 image with the 40 rows above the horizon cropped, then halved), four recorded
sessions of two laps each (about 1,300 frames, with steering noise injected for recovery examples)
and 16 epochs — about 16,000 training images, seconds of training on one core. In a sweep over 5
seeds × 3 built-in tracks × 2 simulator seeds, 16 epochs lapped 3 times in all 30 trials; 8 epochs
in 24 (the oval's long straights leave few bends to learn from). See docs/trainer.md.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from infra.store import open_store
from schemas.messages import JobResult, SessionRef, TrainParams
from trainer.pipeline import TrainerSettings, run_train_job
from trainer.record import RecordConfig, record_expert


@dataclass(frozen=True)
class Recipe:
    track: str = "oval"
    sessions: int = 4
    laps_per_session: float = 2.0
    architecture: str = "mobilenet"
    width: int = 80
    height: int = 40
    crop_top: int = 40
    epochs: int = 16
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    evaluate_laps: int = 3

    def train_params(self, model_name: str = "pilot", model_version: str | None = None) -> TrainParams:
        """The :class:`TrainParams` of a train job with this recipe (what a hub would send)."""
        return TrainParams(
            architecture=self.architecture,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            model_name=model_name,
            model_version=model_version,
            evaluate_track=self.track if self.evaluate_laps else None,
            evaluate_laps=self.evaluate_laps,
            options={"model": {"width": self.width, "height": self.height, "crop_top": self.crop_top}},
        )


DEMO = Recipe()


@dataclass
class QuickstartResult:
    recorded_frames: int
    record_s: float
    train_s: float
    result: JobResult

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"result": self.result.to_dict()}


def run_quickstart(
    store_url: str,
    work_dir: str | Path,
    recipe: Recipe = DEMO,
    *,
    formats: tuple[str, ...] = ("onnx",),
    model_version: str | None = None,
    console: Console | None = None,
) -> QuickstartResult:
    """Record ``recipe.sessions`` expert sessions, train, export, and drive ``recipe.evaluate_laps`` laps."""
    console = console or Console(stderr=True)
    store = open_store(store_url)
    t0 = time.monotonic()
    manifests = record_expert(
        store,
        recipe.track,
        sessions=recipe.sessions,
        seed=recipe.seed,
        config=RecordConfig(laps=recipe.laps_per_session),
    )
    record_s = time.monotonic() - t0
    frames = sum(m.frame_count for m in manifests)
    console.print(f"[bold]recorded[/] {frames} frames in {len(manifests)} sessions ({record_s:.1f} s)")
    params = recipe.train_params(model_version=model_version).model_copy(
        update={"sessions": [SessionRef(car=m.car, session=m.session) for m in manifests]}
    )
    settings = TrainerSettings(store=store_url, work_dir=str(work_dir), export_formats=list(formats))
    t1 = time.monotonic()
    result = run_train_job(params, settings, console=console)
    return QuickstartResult(
        recorded_frames=frames, record_s=record_s, train_s=time.monotonic() - t1, result=result
    )
