"""The `rl` job through the trainer agent, against a real broker and the real hub: progress per
iteration, artifacts in the store, the model registered with its action space, and a clone whose
lineage names its parent."""

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.store import LocalStore
from schemas.messages import ModelRef, RlJob, RlParams
from tests.trainer.hub_thread import HubThread
from tests.trainer.test_agent import _Watcher
from trainer.agent import AgentSettings, TrainerAgent
from trainer.rl.files import DEFAULT_REWARD_SOURCE, default_metadata

TINY = {"num_episodes_between_training": 2, "num_epochs": 1, "batch_size": 32}
OPTIONS = {"steps_per_episode": 48, "max_iterations": 1, "max_steps": 200, "eval_max_time_s": 3.0}


def _params(version: str, **kw: Any) -> RlParams:
    return RlParams(
        model_metadata=default_metadata("discrete"),
        hyperparameters=TINY,
        reward_function=DEFAULT_REWARD_SOURCE,
        track="oval",
        minutes=5,
        workers=1,
        model_version=version,
        evaluate_trials=1,
        options=OPTIONS,
        **kw,
    )


@pytest.mark.slow
def test_rl_jobs_train_register_and_clone(tmp_path: Path, mosquitto: Any) -> None:
    store = LocalStore(tmp_path / "store")
    with HubThread(mosquitto.url, tmp_path / "hub") as hub:
        settings = AgentSettings(
            store=store.url,
            work_dir=str(tmp_path / "agent"),
            broker=mosquitto.url,
            hub=hub.url,
            hub_token=hub.token,
            client_id=f"trainer-test-{uuid.uuid4().hex[:8]}",
            job_timeout_s=300,
        )
        watcher = _Watcher(mosquitto.url)
        agent = TrainerAgent(settings).start()
        try:
            assert agent.subscribed.wait(10)
            watcher.publish("paddock/v1/jobs/rl", RlJob(job="rl-1", params=_params("v1")).to_json())
            watcher.wait_for("rl-1")
            clone = RlJob(job="rl-2", params=_params("v2", clone=ModelRef(name="deepracer", version="v1")))
            watcher.publish("paddock/v1/jobs/rl", clone.to_json())
            watcher.wait_for("rl-2")
            first, second = watcher.results["rl-1"], watcher.results["rl-2"]
            assert first.status == "succeeded", first.error
            assert second.status == "succeeded", second.error
            progress = [p for p in watcher.progress if p.job == "rl-1"]
            iterations = [p for p in progress if p.stage == "training"]
            assert iterations and iterations[0].kind == "rl" and iterations[0].epoch == 1
            assert "completion_pct" in iterations[0].metrics and progress[-1].state == "succeeded"
            assert first.artifacts["model.onnx"] == "models/deepracer/v1/model.onnx"
            for name in ("model.zip", "reward_function.py", "model_card.json", "metrics.jsonl", "reward.png"):
                assert store.exists(f"models/deepracer/v1/{name}"), name
            assert "eval_trials" in first.metrics
            entry = hub.get("/models/deepracer/v1")
            assert entry["card"]["action_space"]["type"] == "discrete"
            assert len(entry["card"]["action_space"]["actions"]) == 10
            cloned = hub.get("/models/deepracer/v2")
            assert cloned["lineage"]["parent"] == "deepracer:v1" and cloned["lineage"]["job"] == "rl-2"
            print(json.dumps({"v2 lineage": cloned["lineage"]["parent"]}))
        finally:
            agent.stop()
            watcher.close()
