"""Fitness evaluations per second of the race optimiser: one Dask worker, two Dask workers, a local
process pool of two, and this process alone, measured in the same run on the same evolution.
Goal: two Dask workers ≥ 1.7× one, and close to the process pool.

    python tests/bench/bench_race_scaling.py [--fitness replay|fast] [--rounds 2]

Each configuration evolves the same population (same seed, so the same evaluations) after a
warm-up map that makes its workers import the simulator; the cluster's start-up is reported apart.
Rounds alternate the configurations so that load from elsewhere on the machine hits them alike;
the best round of each is compared. Both configurations with two workers need two free cores:
on a machine busy with other work the ratio says more about the machine than about Dask.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from firmware.sim import get_track  # noqa: E402
from trainer.race.dask_map import DaskMap, PoolMap, SerialMap  # noqa: E402
from trainer.race.driver import ReplayEvaluator  # noqa: E402
from trainer.race.evolve import Evolution, EvolutionConfig  # noqa: E402
from trainer.race.line import LineEvaluator  # noqa: E402

Mapper = DaskMap | PoolMap | SerialMap
CONFIGS: dict[str, Callable[[], Mapper]] = {
    "dask, 1 worker": lambda: DaskMap(workers=1),
    "dask, 2 workers": lambda: DaskMap(workers=2),
    "process pool, 2": lambda: PoolMap(2),
    "this process": SerialMap,
}


def measure(
    make: Callable[[], Mapper], evaluator: LineEvaluator, config: EvolutionConfig
) -> tuple[float, float]:
    """(start-up seconds, evaluations per second of the evolution)."""
    started = time.perf_counter()
    mapper = make()
    try:
        mapper(evaluator, [[0.0] * evaluator.n_genes] * 4)  # workers import and build the track
        ready = time.perf_counter()
        result = Evolution(evaluator, config, mapper).run()
        took = time.perf_counter() - ready
    finally:
        mapper.close()
    return ready - started, result.evaluations / took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fitness", choices=("replay", "fast"), default="replay")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--generations", type=int, default=2)
    args = parser.parse_args()
    track = get_track("technical")
    evaluator = ReplayEvaluator(track) if args.fitness == "replay" else LineEvaluator(track)
    config = EvolutionConfig(population=args.population, generations=args.generations, seed=1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"fitness {args.fitness}, population {args.population}, {args.generations} generations, "
        f"{os.cpu_count()} CPUs, load average {load:.1f}"
    )
    best: dict[str, tuple[float, float]] = {}
    for rnd in range(args.rounds):
        for name, make in CONFIGS.items():
            startup, rate = measure(make, evaluator, config)
            print(
                f"  round {rnd + 1}  {name:18s} start-up {startup:6.2f} s  {rate:8.2f} evaluations/s",
                flush=True,
            )
            if name not in best or rate > best[name][1]:
                best[name] = (startup, rate)
    one, two, pool = best["dask, 1 worker"][1], best["dask, 2 workers"][1], best["process pool, 2"][1]
    print(f"\n{'configuration':18s} {'evaluations/s':>14s}  (best of {args.rounds})")
    for name, (_, rate) in best.items():
        print(f"{name:18s} {rate:14.2f}")
    verdict = "MET" if two / one >= 1.7 else "NOT MET"
    print(f"\ntwo Dask workers / one: {two / one:.2f}× (goal ≥ 1.7×) — {verdict}")
    print(f"two Dask workers / process pool of two: {two / pool:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
