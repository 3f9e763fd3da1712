"""Training end to end, reduced: a few hundred steps of PPO, a checkpoint, a resume, the monitoring
files, a reward function that fails, an evaluation and the export the car runs."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from schemas.model_card import ModelCard, decode_outputs
from trainer.rl.evaluate import EvalConfig, evaluate
from trainer.rl.export import export
from trainer.rl.files import REWARD_FILE, new_model
from trainer.rl.train import RewardFunctionFailed, TrainConfig, train

TINY = {"num_episodes_between_training": 2, "num_epochs": 1, "batch_size": 32}


def _config(model: Path, **kw: object) -> TrainConfig:
    values: dict = {
        "model_dir": model,
        "track": "oval",
        "workers": 1,
        "steps_per_episode": 48,
        "overrides": dict(TINY),
        "live": False,
        "max_iterations": 1,
        "max_steps": 200,
    }
    values.update(kw)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tmp_path_factory.mktemp("rl") / "model"
    new_model(model)
    first = train(_config(model))
    # An iteration is a rollout of 96 steps with at least one finished episode (+1 step to stop).
    assert first.iterations == 1 and not first.resumed and first.steps % 96 == 1
    assert "1 iterations done" in first.stop_reason
    assert (model / "checkpoint" / "model.zip").exists() and (model / "model.zip").exists()
    mlflow = f"sqlite:///{model.parent / 'mlflow.db'}"
    second = train(_config(model, max_iterations=2, mlflow=mlflow))
    assert second.resumed and second.iterations == 2 and second.steps > first.steps
    return model


def test_the_run_is_tracked_in_mlflow(trained: Path) -> None:
    import mlflow.onnx

    from trainer.perception.tracking import list_runs, model_versions

    uri = f"sqlite:///{trained.parent / 'mlflow.db'}"
    (run,) = list_runs(uri, "reinforcement-learning")
    assert run["status"] == "FINISHED" and run["name"] == "model on oval"
    assert {"mean_reward", "completion_pct", "steps"} <= set(run["metrics"])
    # The policy the car runs is a version in the registry, logged by the run.
    (version,) = model_versions(uri, "model")
    assert version["run_id"] == run["run_id"] and str(version["version"]) == "1"
    mlflow.set_tracking_uri(uri)
    onnx_model = mlflow.onnx.load_model("models:/model/1")
    assert [o.name for o in onnx_model.graph.output] == ["action", "steering", "throttle"]


def test_checkpoint_resume_and_monitoring(trained: Path) -> None:
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2]
    assert lines[1]["steps"] > lines[0]["steps"] and lines[1]["episodes"] > lines[0]["episodes"]
    for x in lines:
        assert x["episodes_this_iteration"] > 0 and 0 <= x["completion_pct"] <= 100
        assert sum(x["statuses"].values()) == x["episodes_this_iteration"]
    assert (trained / "reward.png").read_bytes()[:4] == b"\x89PNG"
    assert (trained / "completion.png").stat().st_size > 1000
    summary = json.loads((trained / "training.json").read_text())
    assert summary["algorithm"] == "clipped_ppo" and summary["observation"]["width"] == 80


def test_term_cond_max_episodes_stops_and_training_leaves_no_log_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where SB3's default logger writes
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    model = tmp_path / "model"
    new_model(model)
    result = train(_config(model, max_iterations=None, overrides=TINY | {"term_cond_max_episodes": 1}))
    assert "term_cond_max_episodes (1)" in result.stop_reason and result.iterations == 1
    train(_config(model, max_iterations=2))  # a resumed run (a loaded model) too
    assert list(scratch.glob("SB3-*")) == []


def test_a_failing_reward_function_stops_training(tmp_path: Path) -> None:
    new_model(tmp_path)
    (tmp_path / REWARD_FILE).write_text(
        "def reward_function(params):\n"
        "    if params['steps'] == 7:\n        return float('inf')\n    return 1.0\n"
    )
    with pytest.raises(RewardFunctionFailed) as err:
        train(_config(tmp_path))
    report = err.value.report()
    assert "reward_function.py: reward_function returned inf" in report
    assert '"steps": 7' in report and '"progress"' in report


def test_evaluate_and_export(trained: Path, tmp_path: Path) -> None:
    report = evaluate(EvalConfig(model_dir=trained, track="oval", trials=2, max_time_s=4.0, out=tmp_path))
    assert len(report.trials) == 2
    for t in report.trials:
        assert t.penalty_s == 5.0 * (t.off_track + t.crashes) and 0 <= t.completion_pct <= 100
    rows = (tmp_path / "simtrace.csv").read_text().splitlines()
    header = rows[0].split(",")
    episodes = [r.split(",")[0] for r in rows[1:]]
    status = [r.split(",")[header.index("episode_status")] for r in rows[1:]]
    tstamp = [float(r.split(",")[header.index("tstamp")]) for r in rows[1:]]
    assert set(episodes) == {"1", "2"} and status[0] == "prepare" and status[episodes.index("2")] == "prepare"
    assert tstamp == sorted(tstamp) and tstamp[-1] > 4.0  # one clock across the trials
    assert json.loads((tmp_path / "evaluation.json").read_text())["summary"]["trials"] == 2

    import onnxruntime as ort

    path, card = export(trained, tmp_path / "export")
    loaded = ModelCard.model_validate_json((tmp_path / "export" / "model_card.json").read_text())
    assert loaded == card and card.action_space is not None and len(card.action_space.actions) == 10
    session = ort.InferenceSession(str(path))
    image = np.random.default_rng(0).random((1, 1, 60, 80), dtype=np.float32)
    action, steering, throttle = session.run(["action", "steering", "throttle"], {"image": image})
    from_card = card.action_space.command(action[0])
    assert decode_outputs(card, {"steering": steering, "throttle": throttle}) == pytest.approx(from_card)
    from stable_baselines3 import PPO

    sb3 = PPO.load(trained / "model.zip", device="cpu")
    chosen, _ = sb3.predict((image * 255).round().astype(np.uint8), deterministic=True)
    assert int(np.argmax(action[0])) == int(chosen[0])


@pytest.mark.slow
def test_sac_for_a_continuous_space_exports_its_mean(tmp_path: Path) -> None:
    import onnxruntime as ort

    new_model(tmp_path, "continuous")
    result = train(_config(tmp_path, overrides=TINY | {"batch_size": 16}))
    assert (
        result.iterations == 1 and json.loads((tmp_path / "training.json").read_text())["algorithm"] == "sac"
    )
    path, card = export(tmp_path)
    assert card.action_space is not None and card.action_space.type == "continuous"
    session = ort.InferenceSession(str(path))
    image = np.random.default_rng(1).random((1, 1, 60, 80), dtype=np.float32)
    action, steering, throttle = session.run(["action", "steering", "throttle"], {"image": image})
    assert -30 <= action[0][0] <= 30 and 0.5 <= action[0][1] <= 1.0
    assert card.action_space.command(action[0]) == pytest.approx(
        {"steering": float(steering[0][0]), "throttle": float(throttle[0][0])}, abs=1e-5
    )
    from stable_baselines3 import SAC

    mean, _ = SAC.load(tmp_path / "model.zip", device="cpu").predict(
        (image * 255).round().astype(np.uint8), deterministic=True
    )
    assert np.allclose(mean[0], action[0], atol=0.05)


def test_lidar_sensor_fuses_camera_and_lidar(tmp_path: Path) -> None:
    import torch

    from trainer.rl.env import EnvSettings, TrainingEnv
    from trainer.rl.files import load_model_dir
    from trainer.rl.train import build_algorithm

    new_model(tmp_path)
    meta = json.loads((tmp_path / "model_metadata.json").read_text())
    (tmp_path / "model_metadata.json").write_text(
        json.dumps(meta | {"sensor": ["FRONT_FACING_CAMERA", "LIDAR"]})
    )
    files = load_model_dir(tmp_path, {"stack_size": 2})
    env = TrainingEnv(EnvSettings(track="oval", metadata=files.metadata.for_env(), stack_size=2))
    obs, _ = env.reset(seed=0)
    assert (
        obs["camera"].shape == (2, 60, 80) and obs["lidar"].ndim == 1 and env.observation_space.contains(obs)
    )
    from stable_baselines3.common.vec_env import DummyVecEnv

    model = build_algorithm(files, DummyVecEnv([lambda: env]), _config(tmp_path))
    tensors = {k: torch.as_tensor(v[None]) for k, v in obs.items()}
    features = model.policy.extract_features(tensors)  # type: ignore[operator]
    assert features.shape == (1, 512 + 64)


def test_sac_trains_on_several_workers(tmp_path: Path) -> None:
    """SB3's SAC counts an episodic train_freq with one env only; the round is in steps instead."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from trainer.rl.env import EnvSettings, TrainingEnv
    from trainer.rl.files import load_model_dir
    from trainer.rl.train import build_algorithm

    new_model(tmp_path, "continuous")
    files = load_model_dir(tmp_path, TINY | {"batch_size": 16})
    settings = EnvSettings(track="oval", metadata=files.metadata.for_env(), max_steps=50)
    envs = DummyVecEnv([lambda i=i: TrainingEnv(settings, i, 2) for i in range(2)])  # type: ignore[misc]
    model = build_algorithm(files, envs, _config(tmp_path, workers=2))
    assert model.train_freq.frequency == 48 and model.gradient_steps == 6  # type: ignore[attr-defined]
    model.learn(total_timesteps=60)
    assert model.num_timesteps >= 60
