"""One optimisation run from end to end, and its files.

:func:`optimize` evolves a line, drives the hall of fame in the simulator and keeps the fastest line
that stays on the track, then :func:`write_result` writes it to a directory:

* ``line.csv`` — ``s, x, y, offset_m, speed_mps, curvature`` per sample (the line and its speeds);
* ``result.json`` — lap times (estimated, verified, baseline expert), the genes, the settings and
  each generation's statistics;
* ``line.png`` — the line on the track, coloured by speed; ``history.png`` — fitness per generation;
* ``checkpoint.pkl`` — the last generation (a run started again on the same directory resumes).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from firmware.sim import ExpertDriver
from firmware.sim.track import Track
from infra.files import write_atomic
from trainer.race.dask_map import DaskMap, PoolMap, SerialMap
from trainer.race.driver import RaceLineDriver, Replay, ReplayEvaluator, replay
from trainer.race.evolve import Evolution, EvolutionConfig, EvolutionResult, GenerationStats
from trainer.race.line import LapEstimate, LineConfig, LineEvaluator

FitnessKind = Literal["fast", "replay"]
CHECKPOINT = "checkpoint.pkl"


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Where the fitness is evaluated: ``scheduler`` (a Dask scheduler URL) or a local cluster of
    ``workers`` processes; ``workers=0`` evaluates in this process, ``pool=True`` on a process pool."""

    scheduler: str | None = None
    workers: int | None = None
    pool: bool = False
    fitness: FitnessKind = "fast"
    verify_laps: int = 2
    verify_candidates: int = 5  # of the hall of fame, driven in the simulator


@dataclass
class RaceResult:
    track: str
    estimate: LapEstimate = field(repr=False)
    verified: Replay = field(repr=False)
    baseline: Replay = field(repr=False)
    evolution: EvolutionResult = field(repr=False)
    genes: list[float]
    workers: int
    lost_workers: int
    files: dict[str, str] = field(default_factory=dict)

    @property
    def best_lap(self) -> float | None:
        return self.verified.best_lap

    def summary(self) -> dict[str, Any]:
        """What ``--json`` prints (``paddock sim run --json``'s keys where they mean the same)."""
        v, b, e = self.verified, self.baseline, self.evolution
        return {
            "track": self.track,
            "driver": "race-line",
            "laps": len(v.lap_times),
            "lap_times": [round(x, 3) for x in v.lap_times],
            "best_lap": round(v.best_lap, 3) if v.best_lap else None,
            "off_track": v.off_track,
            "wheels_off_steps": v.wheels_off_steps,
            "finished": v.finished,
            "estimated_lap": round(self.estimate.lap_time, 3),
            "baseline_best_lap": round(b.best_lap, 3) if b.best_lap else None,
            "generations": e.generations,
            "evaluations": e.evaluations,
            "elapsed_s": round(e.elapsed_s, 2),
            "resumed_from": e.resumed_from,
            "stopped": e.stopped,
            "workers": self.workers,
            "lost_workers": self.lost_workers,
            **self.files,
        }


def make_map(settings: RunSettings) -> DaskMap | PoolMap | SerialMap:
    if settings.workers == 0 and settings.scheduler is None:
        return SerialMap()
    if settings.pool:
        return PoolMap(settings.workers or max(1, os.cpu_count() or 1))
    return DaskMap(settings.scheduler, settings.workers)


def optimize(
    track: Track,
    line: LineConfig,
    evolution: EvolutionConfig,
    settings: RunSettings,
    out: Path | None = None,
    on_generation: Callable[[GenerationStats], None] | None = None,
) -> RaceResult:
    """Evolve, verify in the simulator, and (with ``out``) write the files and checkpoints there."""
    evaluator = ReplayEvaluator(track, line) if settings.fitness == "replay" else LineEvaluator(track, line)
    mapper = make_map(settings)
    try:
        workers = mapper.workers
        run = Evolution(evaluator, evolution, mapper, out / CHECKPOINT if out else None, on_generation).run()
    finally:
        lost = getattr(mapper, "lost_workers", 0)
        mapper.close()
    fast = LineEvaluator(track, line)
    estimate, verified, genes = _pick_clean(fast, run, settings)
    baseline = replay(track, ExpertDriver(track), laps=settings.verify_laps)
    result = RaceResult(track.name, estimate, verified, baseline, run, genes, workers, lost)
    if out is not None:
        result.files = write_result(result, track, out, line, evolution)
    return result


def _pick_clean(
    fast: LineEvaluator, run: EvolutionResult, settings: RunSettings
) -> tuple[LapEstimate, Replay, list[float]]:
    """Drive the best few lines of the hall of fame; keep the fastest that stays on the track (the
    fastest of all when none does)."""
    track = fast.frame.track
    tried: list[tuple[LapEstimate, Replay, list[float]]] = []
    for genes, _fitness in run.hall_of_fame[: settings.verify_candidates]:
        est = fast.estimate(genes)
        tried.append(
            (est, replay(track, RaceLineDriver(track, est.points, est.speeds), settings.verify_laps), genes)
        )

    def key(item: tuple[LapEstimate, Replay, list[float]]) -> tuple[bool, float]:
        lap = item[1].best_lap
        return (not item[1].clean, lap if lap is not None else float("inf"))

    return min(tried, key=key)


def write_result(
    result: RaceResult, track: Track, out: Path, line: LineConfig, evolution: EvolutionConfig
) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "line": str(out / "line.csv"),
        "result": str(out / "result.json"),
        "map": str(out / "line.png"),
        "history_plot": str(out / "history.png"),
    }
    est = result.estimate
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(est.points, axis=0).T))])
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["s", "x", "y", "offset_m", "speed_mps", "curvature"])
    columns = (s, est.points[:, 0], est.points[:, 1], est.offsets, est.speeds, est.curvature)
    for row in zip(*columns, strict=True):
        writer.writerow([f"{v:.5f}" for v in row])
    write_atomic(Path(files["line"]), text.getvalue().encode())
    data = (
        result.summary()
        | {
            "verified_laps": asdict(result.verified) | {"trace": None, "speeds": None},
            "penalty": est.penalty,
            "genes": result.genes,
            "line_config": line.to_dict(),
            "evolution_config": evolution.to_dict(),
            "history": [asdict(h) for h in result.evolution.history],
        }
        | files
    )
    write_atomic(Path(files["result"]), json.dumps(data, indent=2, default=float).encode())
    _plots(result, track, files)
    return files


def _plots(result: RaceResult, track: Track, files: dict[str, str]) -> None:
    from firmware.sim.media import plot_track_map

    est, v, b = result.estimate, result.verified, result.baseline
    closed = np.vstack([est.points, est.points[:1]])
    speeds = np.append(est.speeds, est.speeds[0])
    title = (
        f"{track.name} — optimised line: {v.best_lap or float('nan'):.2f} s in the simulator "
        f"(expert {b.best_lap or float('nan'):.2f} s), {v.wheels_off_steps} steps with a wheel off"
    )
    plot_track_map(track, files["map"], closed, speeds, title=title)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = result.evolution.history
    fig, ax = plt.subplots(figsize=(7, 3.5))
    try:
        gens = [h.generation for h in hist]
        mean = np.array([h.mean for h in hist])
        std = np.array([h.std for h in hist])
        ax.fill_between(gens, np.maximum(mean - std, 0), mean + std, alpha=0.2, label="mean ± std")
        ax.plot(gens, [h.best for h in hist], lw=2, label="best")
        ax.set_ylim(min(h.best for h in hist) * 0.95, max(h.best for h in hist) * 1.6)
        ax.set_xlabel("generation")
        ax.set_ylabel("fitness: lap time + penalties (s)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(files["history_plot"], dpi=100)
    finally:
        plt.close(fig)
