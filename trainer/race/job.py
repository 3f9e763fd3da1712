"""An ``optimize`` job as the trainer agent runs it: evolve a line for the job's track, report every
generation on ``jobs/optimize/{job}/progress``, verify the line in the simulator and upload the
result to ``races/{job}/`` in the object store (line CSV, result JSON, line and history plots).

``params.options`` may set any :class:`~trainer.race.line.LineConfig` or
:class:`~trainer.race.evolve.EvolutionConfig` field, and ``fitness`` (``fast``/``replay``),
``workers`` and ``scheduler``. Without a ``scheduler`` the trainer uses Dask's own configuration
(``DASK_SCHEDULER_ADDRESS``, or ``scheduler-address`` in Dask's config files) when it names one, and
a local cluster otherwise. The job's checkpoint lives in the agent's work directory, so a job
delivered again after the agent died resumes its evolution instead of starting over.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from firmware.sim import TrackError, get_track
from firmware.sim.track import Track
from infra.store import open_store
from schemas.messages import JobProgress, JobResult, OptimizeParams
from trainer.progress import ProgressSink, job_sink
from trainer.race.evolve import EvolutionConfig, GenerationStats
from trainer.race.line import LineConfig
from trainer.race.result import RunSettings, optimize

if TYPE_CHECKING:  # the pipeline imports torch; an optimize job needs none of it
    from trainer.pipeline import TrainerSettings

RESULT_PREFIX = "races"
PROGRESS_INTERVAL_S = 0.5  # at most two updates a second (fast generations take milliseconds)


def result_prefix(job: str) -> str:
    return f"{RESULT_PREFIX}/{job}"


def resolve_track(name: str) -> Track:
    """A built-in, a ``.npy`` path, or a DeepRacer track's name in ``$PADDOCK_TRACKS_DIR``."""
    try:
        return get_track(name)
    except TrackError:
        directory = os.environ.get("PADDOCK_TRACKS_DIR")
        candidate = Path(directory, f"{name}.npy") if directory else None
        if candidate is not None and candidate.is_file():
            return get_track(str(candidate))
        raise


def job_configs(params: OptimizeParams) -> tuple[LineConfig, EvolutionConfig, RunSettings]:
    """The job's settings from its params and options; a bad option is a ValueError naming it."""
    options = dict(params.options)
    line_fields = {f.name for f in dataclasses.fields(LineConfig)} - {"car"}
    evo_fields = {f.name for f in dataclasses.fields(EvolutionConfig)} - {
        "population",
        "generations",
        "seed",
        "budget_s",
    }
    run_fields = {"fitness", "workers", "scheduler"}
    unknown = set(options) - line_fields - evo_fields - run_fields
    if unknown:
        raise ValueError(f"unknown optimize options: {', '.join(sorted(unknown))}")
    line = LineConfig(**{k: v for k, v in options.items() if k in line_fields})
    evolution = EvolutionConfig(
        population=params.population,
        generations=params.generations,
        seed=params.seed,
        budget_s=params.budget_s,
        **{k: v for k, v in options.items() if k in evo_fields},
    )
    fitness = options.get("fitness", "fast")
    if fitness not in ("fast", "replay"):
        raise ValueError(f"option fitness must be 'fast' or 'replay', not {fitness!r}")
    scheduler = options.get("scheduler") or _dask_scheduler()
    return line, evolution, RunSettings(scheduler=scheduler, workers=options.get("workers"), fitness=fitness)


def _dask_scheduler() -> str | None:
    import dask.config

    address = dask.config.get("scheduler-address", None)
    return str(address) if address else None


class _GenerationProgress:
    def __init__(self, sink: ProgressSink, job: str, generations: int, console: Console) -> None:
        self.sink, self.job, self.generations, self.console = sink, job, generations, console
        self._last = 0.0

    def __call__(self, stats: GenerationStats) -> None:
        self.console.print(
            f"generation {stats.generation}/{self.generations}: best {stats.best:.3f} s, "
            f"mean {stats.mean:.3f}, std {stats.std:.3f}, {stats.evals_per_s:.0f} evaluations/s"
        )
        now = time.monotonic()
        if now - self._last < PROGRESS_INTERVAL_S and stats.generation < self.generations:
            return
        self._last = now
        self.sink.emit(
            JobProgress(
                job=self.job,
                kind="optimize",
                state="running",
                stage="generation",
                ts=time.time(),
                epoch=stats.generation,
                epochs=self.generations,
                loss=stats.best,
                metrics={
                    "best": stats.best,
                    "mean": stats.mean,
                    "std": stats.std,
                    "worst": stats.worst,
                    "evaluations": float(stats.evaluations),
                    "evals_per_s": stats.evals_per_s,
                },
            )
        )


def run_optimize_job(
    params: OptimizeParams,
    settings: TrainerSettings,
    *,
    job: str,
    sink: ProgressSink | None = None,
    console: Console | None = None,
) -> JobResult:
    """Run one optimize job; raise on failure (the job runner turns that into a failed result)."""
    started = time.monotonic()
    console = console or Console(stderr=True)
    own_sink = sink is None
    sink = sink or job_sink(settings.broker, job, "optimize", settings.topic_prefix)
    try:
        track = resolve_track(params.track)
        line, evolution, run = job_configs(params)
        out = Path(settings.work_dir) / job
        result = optimize(
            track, line, evolution, run, out, _GenerationProgress(sink, job, evolution.generations, console)
        )
        store = open_store(settings.store)
        artifacts: dict[str, str] = {}
        for name in ("line", "result", "map", "history_plot"):
            path = Path(result.files[name])
            key = f"{result_prefix(job)}/{path.name}"
            store.put(key, path.read_bytes())
            artifacts[name] = key
        summary = result.summary()
        metrics = {
            k: float(summary[k])
            for k in (
                "best_lap",
                "estimated_lap",
                "baseline_best_lap",
                "wheels_off_steps",
                "off_track",
                "generations",
                "evaluations",
            )
            if summary[k] is not None
        }
        return JobResult(
            job=job,
            kind="optimize",
            status="succeeded",
            ts=time.time(),
            artifacts=artifacts,
            metrics=metrics,
            duration_s=time.monotonic() - started,
        )
    finally:
        if own_sink:
            sink.close()
