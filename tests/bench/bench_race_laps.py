"""Lap times per DeepRacer track: the baseline expert, the centre line driven at the car's limits,
and the line the genetic algorithm optimised, all measured in the simulator in one run. Goal: on at
least 4 tracks the optimised line laps ≥ 15% faster than the baseline expert with no wheel off.

    python tests/bench/bench_race_laps.py [--population 32] [--generations 40]

Tracks come from ``$PADDOCK_TRACKS_DIR`` (AWS DeepRacer ``.npy`` files). Lap times are the best of
two laps from a standing start (so the second, flying lap); "wheels off" counts simulator steps with
any wheel off the track. The GA runs in this process (``workers=0``) so the table is about the line,
not the cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from firmware.sim import ExpertDriver, get_track  # noqa: E402
from trainer.race.driver import RaceLineDriver, replay  # noqa: E402
from trainer.race.evolve import EvolutionConfig  # noqa: E402
from trainer.race.line import LineConfig, LineEvaluator  # noqa: E402
from trainer.race.result import RunSettings, optimize  # noqa: E402

GOAL_GAIN = 0.15
GOAL_TRACKS = 4


def tracks_dir() -> Path:
    return Path(os.environ.get("PADDOCK_TRACKS_DIR", ROOT.parent / "shared" / "tracks"))


def one_track(path: Path, population: int, generations: int) -> dict[str, Any]:
    track = get_track(str(path))
    baseline = replay(track, ExpertDriver(track))
    fast = LineEvaluator(track, LineConfig())
    centre = fast.estimate(np.zeros(fast.n_genes))
    on_centre = replay(track, RaceLineDriver(track, centre.points, centre.speeds))
    started = time.perf_counter()
    result = optimize(
        track,
        LineConfig(),
        EvolutionConfig(population=population, generations=generations),
        RunSettings(workers=0),
    )
    took = time.perf_counter() - started
    base, opt = baseline.best_lap or float("nan"), result.verified.best_lap or float("nan")
    return {
        "track": track.name,
        "baseline": base,
        "baseline_off": baseline.wheels_off_steps,
        "centre": on_centre.best_lap or float("nan"),
        "centre_off": on_centre.wheels_off_steps,
        "optimised": opt,
        "estimated": result.estimate.lap_time,
        "optimised_off": result.verified.wheels_off_steps + 1000 * result.verified.off_track,
        "gain": 1.0 - opt / base,
        "seconds": took,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--generations", type=int, default=40)
    args = parser.parse_args()
    paths = sorted(tracks_dir().glob("*.npy"))
    if len(paths) < GOAL_TRACKS:
        print(f"need at least {GOAL_TRACKS} DeepRacer tracks in {tracks_dir()} (PADDOCK_TRACKS_DIR)")
        return 2
    print(
        f"GA: population {args.population}, {args.generations} generations per track; laps in the simulator"
    )
    header = (
        f"{'track':26s} {'expert':>8s} {'centre@limits':>14s} {'optimised':>10s} {'(estimate)':>10s} "
        f"{'wheels off':>10s} {'faster':>7s} {'GA s':>6s}"
    )
    print(header)
    rows = []
    for path in paths:
        r = one_track(path, args.population, args.generations)
        rows.append(r)
        print(
            f"{r['track']:26s} {r['baseline']:8.3f} {r['centre']:14.3f} {r['optimised']:10.3f} "
            f"{r['estimated']:10.3f} {r['optimised_off']:10d} {100 * r['gain']:6.1f}% {r['seconds']:6.1f}",
            flush=True,
        )
    good = [r for r in rows if r["gain"] >= GOAL_GAIN and r["optimised_off"] == 0]
    print(
        f"\n{len(good)} of {len(rows)} tracks ≥ {100 * GOAL_GAIN:.0f}% faster than the expert "
        f"with no wheel off (goal: {GOAL_TRACKS}) — {'MET' if len(good) >= GOAL_TRACKS else 'NOT MET'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
