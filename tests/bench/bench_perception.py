"""Perception goals, measured in one run:

* the avoiding expert completes laps on every shipped track (the built-ins and the DeepRacer
  files in ``PADDOCK_TRACKS_DIR``) with obstacles placed at 20, 45 and 70 %, against the crashes
  of the plain expert on the same courses;
* the obstacle-ahead classifier's macro F1 (goal ≥ 0.95) and the surface classifier's accuracy
  (goal ≥ 0.95) on held-out sessions of randomised scenes, after capture → validation → Optuna
  search → training with early stopping.

    python tests/bench/bench_perception.py [--sessions 100] [--frames 80] [--trials 2] [--epochs 40]
        [--out DIR] [--seed N] [--skip-expert]
    python -m pytest tests/bench/bench_perception.py -s -p no:cacheprovider -o python_files='bench_*.py'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from firmware.sim import ExpertDriver, World, WorldConfig, drive, get_track, place_obstacles  # noqa: E402
from firmware.sim.capture import CaptureConfig, capture  # noqa: E402
from firmware.sim.tracks import builtin_track_names  # noqa: E402

GOAL_F1 = 0.95
GOAL_SURFACE = 0.95
# Scenes matter more than frames: 40 sessions a track reached obstacle F1 0.92, 80 reached 0.96
# (docs/perception.md). Validation is noisy from epoch to epoch, so early stopping waits long.
SESSIONS, EPOCHS, PATIENCE = 100, 40, 10


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


def bench_classifiers(
    sessions: int, frames: int, trials: int, epochs: int, out: Path | None = None, seed: int = 0
) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        return _classifiers(out or Path(tmp), sessions, frames, trials, epochs, seed)


def _classifiers(root: Path, sessions: int, frames: int, trials: int, epochs: int, seed: int) -> bool:
    from trainer.perception.pipeline import RunConfig, run
    from trainer.perception.train import TrainConfig

    data = root / "data"
    started = time.perf_counter()
    scenes = CaptureConfig(sessions=sessions, frames=frames)
    tracks = ("oval", "s-curve", "technical")
    # One process per track, as many at once as there are cores: capture is CPU-bound rendering.
    with ProcessPoolExecutor(max_workers=min(len(tracks), os.cpu_count() or 1)) as pool:
        list(pool.map(_capture_track, [data] * 3, tracks, [scenes] * 3, [seed, seed + 1000, seed + 2000]))
    print(f"captured {3 * sessions} sessions × {frames} frames in {time.perf_counter() - started:.0f} s")
    config = RunConfig(
        data=str(data),
        out=root / "run",
        train=TrainConfig(epochs=epochs, patience=PATIENCE),
        trials=trials,
        epochs_per_trial=3,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        export=True,
    )
    summary = run(config, progress=lambda msg: print(f"  {msg}", flush=True))
    _print_report(root / "run" / "report")
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
    return bool(f1 >= GOAL_F1 and acc >= GOAL_SURFACE)


def _capture_track(data: Path, track: str, config: CaptureConfig, seed: int) -> int:
    return len(capture(data, track, config, seed=seed))


def _print_report(report: Path) -> None:
    """Per-class figures and the confusion matrix of each task on the held-out sessions."""
    metrics = json.loads((report / "metrics.json").read_text())
    for task, m in metrics["tasks"].items():
        classes = list(m["per_class"])
        print(f"{task}: {m['frames']} labelled test frames")
        print(f"  {'class':<9} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8} {'auc':>6}")
        for name, c in m["per_class"].items():
            auc = m["roc_auc"].get(name)
            print(
                f"  {name:<9} {c['precision']:>9.3f} {c['recall']:>7.3f} {c['f1']:>6.3f} {c['support']:>8} "
                f"{'-' if auc is None else f'{auc:.3f}':>6}"
            )
        print("  confusion (rows true, columns predicted): " + " ".join(f"{c:>8}" for c in classes))
        for name, row in zip(classes, m["confusion"], strict=True):
            print(f"  {name:>41} " + " ".join(f"{v:>8}" for v in row))
    print("report files: " + ", ".join(sorted(p.name for p in report.iterdir())))


def test_bench_perception() -> None:
    assert bench_avoiding_expert()
    bench_classifiers(sessions=SESSIONS, frames=80, trials=2, epochs=EPOCHS)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=SESSIONS, help="per track (three tracks)")
    parser.add_argument("--frames", type=int, default=80, help="per session")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=None, help="keep the data and the run here")
    parser.add_argument("--seed", type=int, default=0, help="the scenes' seed (another draw of every scene)")
    parser.add_argument("--skip-expert", action="store_true")
    args = parser.parse_args()
    if not args.skip_expert:
        bench_avoiding_expert()
    bench_classifiers(args.sessions, args.frames, args.trials, args.epochs, args.out, args.seed)
