"""Perception goals, measured in one run:

* the avoiding expert completes laps on every shipped track (the built-ins and the DeepRacer
  files in ``PADDOCK_TRACKS_DIR``) with obstacles placed at 20, 45 and 70 %, against the crashes
  of the plain expert on the same courses;
* the obstacle-ahead classifier's macro F1 (goal ≥ 0.95) and the surface classifier's accuracy
  (goal ≥ 0.95) on held-out sessions of randomised scenes, after capture → validation → Optuna
  search → training with early stopping.

    python tests/bench/bench_perception.py [--sessions 20] [--frames 200] [--trials 3] [--epochs 20]
    python -m pytest tests/bench/bench_perception.py -s -p no:cacheprovider -o python_files='bench_*.py'
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from firmware.sim import ExpertDriver, World, WorldConfig, drive, get_track, place_obstacles  # noqa: E402
from firmware.sim.capture import CaptureConfig, capture  # noqa: E402
from firmware.sim.tracks import builtin_track_names  # noqa: E402

GOAL_F1 = 0.95
GOAL_SURFACE = 0.95


def shipped_tracks() -> list[str]:
    names = list(builtin_track_names())
    folder = Path(os.environ.get("PADDOCK_TRACKS_DIR", ROOT.parent / "shared" / "tracks"))
    names += [str(p) for p in sorted(folder.glob("*.npy"))]
    return names


def bench_avoiding_expert(laps: int = 2) -> bool:
    print(f"{'track':<28} {'laps':>4} {'crashes':>8} {'off':>4} {'plain expert crashes':>21}")
    ok = True
    for name in shipped_tracks():
        t = get_track(name)
        course = place_obstacles(t, [20, 45, 70])
        config = WorldConfig(obstacles=course, dt=1 / 15, substeps=4)
        avoiding = drive(World(t, config, seed=0), ExpertDriver(t, config.car), laps)
        plain = drive(
            World(t, config, seed=0), ExpertDriver(t, config.car, obstacles=[]), laps, max_time_s=60 * laps
        )
        ok &= avoiding.finished and avoiding.crashes == 0
        print(
            f"{t.name:<28} {avoiding.laps:>4} {avoiding.crashes:>8} {avoiding.off_track:>4} "
            f"{plain.crashes:>21}"
        )
    return ok


def bench_classifiers(sessions: int, frames: int, trials: int, epochs: int) -> bool:
    from trainer.perception.pipeline import RunConfig, run
    from trainer.perception.train import TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        for i, track in enumerate(("oval", "s-curve", "technical")):
            capture(data, track, CaptureConfig(sessions=sessions, frames=frames), seed=1000 * i)
        print(f"captured {3 * sessions} sessions × {frames} frames in {time.perf_counter() - started:.0f} s")
        config = RunConfig(
            data=str(data),
            out=Path(tmp) / "run",
            train=TrainConfig(epochs=epochs, patience=6),
            trials=trials,
            epochs_per_trial=4,
            tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            export=True,
        )
        summary = run(config, progress=lambda msg: print(f"  {msg}", flush=True))
    f1 = summary["test"]["obstacle"]["macro_f1"]
    acc = summary["test"]["surface"]["accuracy"]
    print(
        f"held-out sessions: {len(summary['splits']['test']['sessions'])}, "
        f"frames {summary['splits']['test']['frames']}"
    )
    print(
        f"obstacle macro F1 {f1:.4f} (goal ≥ {GOAL_F1})  "
        f"accuracy {summary['test']['obstacle']['accuracy']:.4f}"
    )
    print(
        f"surface accuracy  {acc:.4f} (goal ≥ {GOAL_SURFACE})  "
        f"macro F1 {summary['test']['surface']['macro_f1']:.4f}"
    )
    for name, info in summary.get("export", {}).items():
        print(f"{name:<10} {info['bytes']:>8} bytes  test accuracy {info['test_accuracy']}")
    print(
        f"training {summary['train_seconds']} s, {summary['epochs']} epochs, "
        f"best epoch {summary['best_epoch']}"
    )
    return f1 >= GOAL_F1 and acc >= GOAL_SURFACE


def test_bench_perception() -> None:
    assert bench_avoiding_expert()
    bench_classifiers(sessions=20, frames=200, trials=3, epochs=20)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=20, help="per track")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--skip-expert", action="store_true")
    args = parser.parse_args()
    if not args.skip_expert:
        bench_avoiding_expert()
    bench_classifiers(args.sessions, args.frames, args.trials, args.epochs)
