"""Train to race: the lap times of the baseline expert, the optimised line and an autopilot trained on
laps of the optimised line (camera only, ONNX Runtime), measured in the simulator in one run.
Goal: the autopilot completes 10 laps within 1.10× the optimised line's lap time, with no off-track.

    python tests/bench/bench_race_autopilot.py [--track oval] [--sessions 4] [--epochs 24]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from firmware.sim import get_track  # noqa: E402
from infra.store import LocalStore  # noqa: E402
from trainer.race.autopilot import RACE_RECIPE, race_laps, record_race_sessions, train_race_model  # noqa: E402
from trainer.race.evolve import EvolutionConfig  # noqa: E402
from trainer.race.line import LineConfig  # noqa: E402
from trainer.race.result import RunSettings, optimize  # noqa: E402

GOAL = 1.10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--track", default="oval")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=RACE_RECIPE.epochs)
    parser.add_argument("--laps", type=int, default=10)
    args = parser.parse_args()
    track = get_track(args.track)
    work = Path(tempfile.mkdtemp(prefix="race-autopilot-"))
    t0 = time.perf_counter()
    line = optimize(
        track, LineConfig(), EvolutionConfig(population=32, generations=40), RunSettings(workers=0)
    )
    t1 = time.perf_counter()
    store = LocalStore(work / "store")
    manifests = record_race_sessions(store, track, line.estimate, sessions=args.sessions)
    t2 = time.perf_counter()
    recipe = dataclasses.replace(RACE_RECIPE, epochs=args.epochs, track=args.track)
    result = train_race_model(store.url, work / "runs", manifests, recipe)
    t3 = time.perf_counter()
    if result.status != "succeeded" or "onnx" not in result.artifacts:
        print(f"training failed: {result.error}")
        return 1
    onnx = store.root / result.artifacts["onnx"]
    laps = race_laps(onnx, track, laps=args.laps)
    t4 = time.perf_counter()
    best_line = line.verified.best_lap or float("nan")
    frames = sum(m.frame_count for m in manifests)
    print(
        f"track {track.name}; optimise {t1 - t0:.0f} s, record {frames} frames {t2 - t1:.0f} s, "
        f"train {args.epochs} epochs {t3 - t2:.0f} s, drive {t4 - t3:.0f} s"
    )
    print(f"{'driver':28s} {'lap (s)':>10s}")
    print(f"{'baseline expert':28s} {line.baseline.best_lap or float('nan'):10.3f}")
    print(f"{'optimised line (expert)':28s} {best_line:10.3f}")
    line_laps = line.verified.lap_times  # a standing-start lap, then flying laps
    line_total = line_laps[0] + (args.laps - 1) * line_laps[-1]
    auto_total = sum(laps.lap_times)
    if laps.lap_times:
        flying = laps.lap_times[1:] or laps.lap_times
        print(f"{'autopilot, best lap':28s} {min(laps.lap_times):10.3f}")
        print(f"{'autopilot, slowest flying':28s} {max(flying):10.3f}")
    print(
        f"autopilot laps: {len(laps.lap_times)}/{args.laps}, off track {laps.off_track} times; "
        f"{', '.join(f'{t:.2f}' for t in laps.lap_times)}"
    )
    ratio = auto_total / line_total if laps.finished else float("inf")
    strict = max(laps.lap_times[1:] or [float("inf")]) / line_laps[-1]
    met = laps.finished and laps.off_track == 0 and ratio <= GOAL
    print(
        f"{args.laps} laps: autopilot {auto_total:.2f} s, optimised line {line_total:.2f} s (a standing "
        f"start, then flying laps): {ratio:.3f}× (goal ≤ {GOAL}) — {'MET' if met else 'NOT MET'}"
    )
    print(f"slowest flying lap / the line's flying lap: {strict:.3f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
