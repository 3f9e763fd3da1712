"""Training a DeepRacer model with stable-baselines3: PPO with clipping for a discrete action space
(``clipped_ppo``), SAC for a continuous one (``sac``).

``train(TrainConfig(...))`` reads the model directory, builds one :class:`~trainer.rl.env.TrainingEnv`
per worker process, maps DeepRacer's hyperparameters onto SB3's (:func:`sb3_kwargs`, the table in
docs/rl.md) and learns until the time budget, ``term_cond_max_episodes`` or
``term_cond_avg_score`` (the mean reward of an iteration's episodes) stops it. Each iteration is
logged (``metrics.jsonl``, ``reward.png``, ``completion.png``) and checkpointed
(``checkpoint/model.zip`` + ``checkpoint/state.json``, written atomically), so a run that is
interrupted resumes where its last iteration ended when started again with the same ``out``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from trainer.rl.env import EnvSettings, make_vec_env
from trainer.rl.files import (
    HYPERPARAMETERS_FILE,
    METADATA_FILE,
    REWARD_FILE,
    ModelFiles,
    load_model_dir,
    resolve_track,
)
from trainer.rl.monitor import IterationStats, LiveView, RunLog, summarise
from trainer.rl.networks import DeepRacerExtractor

MODEL_FILE = "model.zip"
CHECKPOINT_DIR = "checkpoint"
SUMMARY_FILE = "training.json"


class RewardFunctionFailed(RuntimeError):
    """The reward function raised or returned a bad value during training."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error

    def report(self) -> str:
        params = json.dumps(self.error["params"], indent=2, default=str)
        return f"{self.error['message']}\n{self.error['traceback']}\nthe step's params:\n{params}"


@dataclass
class TrainConfig:
    model_dir: Path
    track: str = "reinvent_base"
    out: Path | None = None  # default: the model directory itself
    minutes: float | None = None
    workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    seed: int = 0
    clone: Path | None = None  # a trained model directory to start from
    overrides: dict[str, Any] = field(default_factory=dict)
    width: int = 80
    height: int = 60
    max_steps: int = 2000
    steps_per_episode: int = 60  # what an iteration's rollout size assumes (see sb3_kwargs)
    race_type: str = "time_trial"
    obstacles: int = 3
    bot_cars: int = 3  # head_to_head
    bot_speed: float = 0.2  # m/s
    lane_change: bool = False
    randomize: bool = False
    live: bool = True
    threads: int = 1  # torch threads of the learner (the workers take the other cores)
    max_iterations: int | None = None  # for tests

    @property
    def out_dir(self) -> Path:
        return self.out or self.model_dir


@dataclass
class TrainResult:
    out: Path
    stop_reason: str
    iterations: int
    episodes: int
    steps: int
    elapsed_s: float
    history: list[IterationStats]
    resumed: bool
    parent: str | None


def sb3_kwargs(files: ModelFiles, workers: int, steps_per_episode: int) -> dict[str, Any]:
    """DeepRacer's hyperparameters as SB3 constructor arguments (docs/rl.md has the table)."""
    h = files.hyperparameters
    common = {"learning_rate": h.lr, "batch_size": h.batch_size, "gamma": h.discount_factor}
    # An iteration collects about num_episodes_between_training episodes; SB3 needs it in steps.
    rollout = h.num_episodes_between_training * steps_per_episode
    if files.metadata.training_algorithm == "sac":
        # SB3 counts episodic train_freq with one env only, so the round is in steps per worker;
        # num_epochs passes over the round's new experience, as PPO's epochs over its rollout.
        per_worker = math.ceil(rollout / workers)
        return common | {
            "ent_coef": h.sac_alpha,
            "buffer_size": 100_000,
            "learning_starts": max(h.batch_size, 200),
            "train_freq": (per_worker, "step"),
            "gradient_steps": math.ceil(h.num_epochs * per_worker * workers / h.batch_size),
        }
    # Rounded up to whole minibatches, so none is truncated.
    n_steps = math.ceil(rollout / (workers * h.batch_size)) * h.batch_size
    return common | {
        "n_steps": n_steps,
        "n_epochs": h.num_epochs,
        "ent_coef": h.beta_entropy,
        "clip_range": 0.2,
        "gae_lambda": 0.95,
    }


def env_settings(files: ModelFiles, config: TrainConfig) -> EnvSettings:
    return EnvSettings(
        track=resolve_track(config.track),
        metadata=files.metadata.for_env(),
        reward_path=str(files.reward_path),
        width=config.width,
        height=config.height,
        stack_size=files.hyperparameters.stack_size,
        max_steps=config.max_steps,
        race_type=config.race_type,
        obstacles=config.obstacles,
        bot_cars=config.bot_cars,
        bot_speed=config.bot_speed,
        lane_change=config.lane_change,
        randomize=config.randomize,
    )


def build_algorithm(files: ModelFiles, env: Any, config: TrainConfig) -> BaseAlgorithm:
    policy = "MultiInputPolicy" if files.metadata.uses_lidar else "CnnPolicy"
    policy_kwargs: dict[str, Any] = {
        "features_extractor_class": DeepRacerExtractor,
        "features_extractor_kwargs": {"preset": files.metadata.neural_network},
        "net_arch": [] if files.metadata.training_algorithm == "clipped_ppo" else [256],
    }
    kwargs = sb3_kwargs(files, config.workers, config.steps_per_episode)
    cls: type[BaseAlgorithm] = SAC if files.metadata.training_algorithm == "sac" else PPO
    model = cls(policy, env, policy_kwargs=policy_kwargs, seed=config.seed, device="cpu", verbose=0, **kwargs)
    return quiet(model)


def quiet(model: BaseAlgorithm) -> BaseAlgorithm:
    """A logger that writes nowhere: without one SB3's ``learn()`` makes a ``SB3-<date>`` folder in
    the temporary directory per call (its default logger's folder) and leaves it there."""
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def _atomic_save(model: BaseAlgorithm, state: dict[str, Any], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{MODEL_FILE}"
    model.save(tmp)
    os.replace(tmp, directory / MODEL_FILE)
    (directory / ".state.json").write_text(json.dumps(state))
    os.replace(directory / ".state.json", directory / "state.json")


class _Progress(BaseCallback):
    """Collects finished episodes, closes iterations, checkpoints and decides when to stop."""

    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run
        self.stop_reason = ""

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "reward_error" in info:
                raise RewardFunctionFailed(info["reward_error"])
            if "episode_summary" in info:
                self.run.pending.append(info["episode_summary"])
        if (
            self.run.sac
            and len(self.run.pending) >= self.run.files.hyperparameters.num_episodes_between_training
        ):
            self.run.close_iteration(self.model)
        self.stop_reason = self.run.should_stop()
        return not self.stop_reason

    def _on_rollout_start(self) -> None:
        # PPO: the previous rollout has just been trained on, so the checkpoint holds the update.
        if not self.run.sac:
            self.run.close_iteration(self.model)
            self.stop_reason = self.run.should_stop()


class _Run:
    """The state of one training run (also what the checkpoint's ``state.json`` holds)."""

    def __init__(
        self,
        files: ModelFiles,
        config: TrainConfig,
        log: RunLog,
        view: LiveView,
        on_iteration: Callable[[IterationStats], None] | None,
    ) -> None:
        self.files, self.config, self.log, self.view = files, config, log, view
        self.on_iteration = on_iteration
        self.sac = files.metadata.training_algorithm == "sac"
        self.pending: list[dict[str, Any]] = []
        last = log.history[-1] if log.history else None
        self.iteration = last.iteration if last else 0
        self.episodes = last.episodes if last else 0
        self.elapsed_before = last.elapsed_s if last else 0.0
        self.started = time.monotonic()
        self.steps_at_start = last.steps if last else 0
        self.last_mean_reward: float | None = None

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def close_iteration(self, model: BaseAlgorithm) -> None:
        if not self.pending:
            return
        self.iteration += 1
        self.episodes += len(self.pending)
        run_s = max(time.monotonic() - self.started, 1e-9)
        stats = summarise(
            self.pending,
            iteration=self.iteration,
            steps=int(model.num_timesteps),
            total_episodes=self.episodes,
            elapsed_s=self.elapsed_s,
            steps_per_s=(model.num_timesteps - self.steps_at_start) / run_s,
        )
        self.pending = []
        self.last_mean_reward = stats.mean_reward
        self.log.add(stats)
        self.log.plot()
        state = {"iteration": self.iteration, "episodes": self.episodes, "elapsed_s": stats.elapsed_s}
        _atomic_save(model, state, self.config.out_dir / CHECKPOINT_DIR)
        self.view.update(self.log.history, self._budget_text())
        if self.on_iteration is not None:
            self.on_iteration(stats)

    def _budget_text(self) -> str:
        minutes = self.config.minutes
        spent = f"{self.elapsed_s / 60:.1f} min"
        return f"{spent} of {minutes:g} min" if minutes else spent

    def should_stop(self) -> str:
        h = self.files.hyperparameters
        if self.config.minutes is not None and self.elapsed_s >= self.config.minutes * 60:
            return f"time budget of {self.config.minutes:g} min spent"
        if self.episodes >= h.term_cond_max_episodes:
            return f"term_cond_max_episodes ({h.term_cond_max_episodes}) reached"
        if self.last_mean_reward is not None and self.last_mean_reward >= h.term_cond_avg_score:
            return f"term_cond_avg_score ({h.term_cond_avg_score:g}) reached"
        if self.config.max_iterations is not None and self.iteration >= self.config.max_iterations:
            return f"{self.iteration} iterations done"
        return ""


def prepare_out(files: ModelFiles, out: Path) -> None:
    """The run directory holds the three files too, so it is a complete model directory."""
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != files.directory.resolve():
        for name in (METADATA_FILE, HYPERPARAMETERS_FILE, REWARD_FILE):
            shutil.copyfile(files.directory / name, out / name)
        if files.hyperparameters != load_model_dir(out).hyperparameters:
            (out / HYPERPARAMETERS_FILE).write_text(json.dumps(files.hyperparameters.model_dump(), indent=4))


def train(
    config: TrainConfig,
    console: Console | None = None,
    on_iteration: Callable[[IterationStats], None] | None = None,
) -> TrainResult:
    """Train (or resume) the model in ``config.model_dir``; see the module docstring."""
    import torch

    console = console or Console(stderr=True)
    files = load_model_dir(config.model_dir, config.overrides)
    torch.set_num_threads(config.threads)
    out = config.out_dir
    prepare_out(files, out)
    env = make_vec_env(env_settings(files, config), config.workers, seed=config.seed)
    checkpoint = out / CHECKPOINT_DIR / MODEL_FILE
    resumed = checkpoint.exists()
    try:
        if resumed:
            cls = SAC if files.metadata.training_algorithm == "sac" else PPO
            model: BaseAlgorithm = quiet(
                cls.load(checkpoint, env=env, device="cpu", **_resume_kwargs(files, config))
            )
            console.print(f"resuming from {checkpoint} ({model.num_timesteps} steps done)")
        else:
            model = build_algorithm(files, env, config)
            if config.clone is not None:
                from trainer.rl.clone import load_parent_weights

                load_parent_weights(model, config.clone)
        log = RunLog(out)
        title = f"training {files.directory.name} on {config.track} ({config.workers} workers)"
        with LiveView(console, title, enabled=config.live) as view:
            run = _Run(files, config, log, view, on_iteration)
            callback = _Progress(run)
            stop = run.should_stop()
            if not stop:
                model.learn(total_timesteps=10**12, callback=callback, reset_num_timesteps=not resumed)
                stop = callback.stop_reason or "stopped"
                run.close_iteration(model)  # the episodes of a rollout the budget cut short
            view.update(log.history, f"done: {stop}")
        model.save(out / MODEL_FILE)
    finally:
        env.close()
    result = TrainResult(
        out=out,
        stop_reason=stop,
        iterations=run.iteration,
        episodes=run.episodes,
        steps=int(model.num_timesteps),
        elapsed_s=run.elapsed_s,
        history=log.history,
        resumed=resumed,
        parent=str(config.clone) if config.clone else _previous_parent(out),
    )
    _write_summary(result, files, config)
    return result


def _resume_kwargs(files: ModelFiles, config: TrainConfig) -> dict[str, Any]:
    """What a resumed run may change: the learning rate and entropy/epochs; not the spaces."""
    kwargs = sb3_kwargs(files, config.workers, config.steps_per_episode)
    keep = (
        ("learning_rate", "ent_coef", "gamma")
        if files.metadata.training_algorithm == "sac"
        else ("learning_rate", "ent_coef", "gamma", "n_epochs")
    )
    return {k: v for k, v in kwargs.items() if k in keep}


def _previous_parent(out: Path) -> str | None:
    try:
        parent = json.loads((out / SUMMARY_FILE).read_text()).get("parent")
        return str(parent) if parent else None
    except (OSError, ValueError):
        return None


def _write_summary(result: TrainResult, files: ModelFiles, config: TrainConfig) -> None:
    last = result.history[-1] if result.history else None
    summary = {
        "model": files.directory.name,
        "track": config.track,
        "algorithm": files.metadata.training_algorithm,
        "neural_network": files.metadata.neural_network,
        "observation": {
            "width": config.width,
            "height": config.height,
            "colour": "gray",
            "stack_size": files.hyperparameters.stack_size,
        },
        "stop_reason": result.stop_reason,
        "iterations": result.iterations,
        "episodes": result.episodes,
        "steps": result.steps,
        "elapsed_s": round(result.elapsed_s, 1),
        "workers": config.workers,
        "parent": result.parent,
        "race_type": config.race_type,
        "last_iteration": asdict(last) if last else None,
    }
    (result.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
