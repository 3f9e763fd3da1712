"""Training benchmark: DeepRacer's defaults (follow-the-centre-line reward, the default discrete
action space, DeepRacer's hyperparameters) trained with PPO on reinvent_base until the model drives
3 consecutive clean evaluation laps (3 trials, each a complete lap with no off-track penalty).
Goal: within 30 minutes of wall clock on a 2-core machine.

Prints the learning curve (per iteration: minutes, steps, mean reward, completion %, laps) and,
at every evaluation, the trials; at the end the minutes to 3 clean laps (or that the budget ran
out) and the final evaluation table.

    python -m tests.bench.bench_rl_train [budget minutes, default 45] [workers, default 2] [seed, default 0]
        [--algorithm sac]   (SAC on DeepRacer's default continuous space instead of PPO)
    python -m pytest tests/bench/bench_rl_train.py -s -p no:cacheprovider -o python_files='bench_*.py'
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from trainer.rl.evaluate import EvalConfig, EvalReport, evaluate
from trainer.rl.files import new_model
from trainer.rl.monitor import IterationStats
from trainer.rl.train import CHECKPOINT_DIR, MODEL_FILE, TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
TRACK = "reinvent_base"
EVAL_EVERY_S = 120.0  # evaluate at most this often (it costs training time)


def _track() -> str:
    tracks = Path(os.environ.get("PADDOCK_TRACKS_DIR", ROOT.parent / "shared" / "tracks"))
    return str(tracks / f"{TRACK}.npy")


class Bench:
    def __init__(self, run: Path, track: str, algorithm: str = "ppo") -> None:
        self.run, self.track, self.algorithm = run, track, algorithm
        self.started = time.monotonic()
        self.last_eval = -EVAL_EVERY_S
        self.solved_at: float | None = None
        self.final: EvalReport | None = None

    def on_iteration(self, stats: IterationStats) -> None:
        wall = (time.monotonic() - self.started) / 60
        laps = stats.statuses.get("lap_complete", 0)
        print(
            f"  iter {stats.iteration:3d}  {wall:5.1f} min  {stats.steps:7d} steps  "
            f"reward {stats.mean_reward:7.1f}  "
            f"completion {stats.completion_pct:5.1f} %  laps {laps}/{stats.episodes_this_iteration}  "
            f"{stats.steps_per_s:5.0f} steps/s",
            flush=True,
        )
        now = time.monotonic() - self.started
        if now - self.last_eval < EVAL_EVERY_S and stats.completion_pct < 60:
            return
        self.last_eval = now
        report = self.evaluate()
        s = report.summary
        print(
            f"    evaluation: clean laps {s['clean_laps']}/3, completion {s['completion_pct']:.1f} %",
            flush=True,
        )
        if s["clean_laps"] == 3 and self.solved_at is None:
            self.solved_at = (time.monotonic() - self.started) / 60
            self.final = report
            raise _Solved

    def evaluate(self) -> EvalReport:
        from stable_baselines3 import PPO, SAC

        cls = SAC if self.algorithm == "sac" else PPO
        model = cls.load(self.run / CHECKPOINT_DIR / MODEL_FILE, device="cpu")

        def policy(obs: object) -> object:
            return model.predict(obs, deterministic=True)[0]

        return evaluate(EvalConfig(model_dir=self.run, track=self.track, trials=3, max_time_s=90.0), policy)


class _Solved(Exception):
    pass


def run(
    budget_minutes: float = 45.0,
    workers: int = 2,
    seed: int = 0,
    keep: Path | None = None,
    algorithm: str = "ppo",
) -> EvalReport:
    track = _track()
    print(
        f"load average at start: {os.getloadavg()}, cores: {os.cpu_count()}, workers: {workers}, "
        f"algorithm: {algorithm}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        model = keep or Path(tmp) / "model"
        new_model(model, "continuous" if algorithm == "sac" else "discrete")
        bench = Bench(model, track, algorithm)
        config = TrainConfig(
            model_dir=model, track=track, minutes=budget_minutes, workers=workers, live=False, seed=seed
        )
        try:
            result = train(config, on_iteration=bench.on_iteration)
            print(f"stopped: {result.stop_reason}")
        except _Solved:  # the checkpoint that drove the clean laps is the model
            shutil.copyfile(model / CHECKPOINT_DIR / MODEL_FILE, model / MODEL_FILE)
        print(f"load average at end: {os.getloadavg()}")
        if bench.solved_at is not None and bench.final is not None:
            print(f"3 consecutive clean evaluation laps after {bench.solved_at:.1f} min of wall clock")
        else:
            print(f"no 3 clean laps within {budget_minutes:g} min")
            bench.final = bench.evaluate()
        from deploy.commands.rl import evaluation_table, out_console

        out_console.print(evaluation_table(bench.final.to_dict()))
        return bench.final


def test_bench_rl_train() -> None:
    run()


if __name__ == "__main__":
    args = sys.argv[1:]
    algo = "ppo"
    if "--algorithm" in args:
        i = args.index("--algorithm")
        algo = args[i + 1]
        del args[i : i + 2]
    if algo not in ("ppo", "sac"):
        sys.exit(f"error: --algorithm must be ppo or sac, got {algo!r}")
    run(
        float(args[0]) if args else 45.0,
        int(args[1]) if len(args) > 1 else 2,
        int(args[2]) if len(args) > 2 else 0,
        algorithm=algo,
    )
