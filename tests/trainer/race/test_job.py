"""An ``optimize`` job end to end: requested through the real hub's REST API, published on MQTT
(Mosquitto), taken by the trainer agent, reported per generation, stored and listed by the hub."""

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.store import LocalStore
from schemas.messages import OptimizeParams
from tests.trainer.hub_thread import HubThread
from trainer.agent import AgentSettings, TrainerAgent
from trainer.race.job import job_configs, run_optimize_job


def _wait_done(hub: HubThread, job: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry: dict[str, Any] = hub.get(f"/jobs/{job}")
        if entry["state"] in ("succeeded", "failed") and entry.get("result"):
            return entry
        time.sleep(0.5)
    raise AssertionError(f"job {job} did not finish: {hub.get(f'/jobs/{job}')}")


@pytest.mark.slow
def test_an_optimize_job_from_the_hub_is_run_reported_and_stored(tmp_path: Path, mosquitto: Any) -> None:
    store = LocalStore(tmp_path / "store")
    with HubThread(mosquitto.url, tmp_path / "hub") as hub:
        agent = TrainerAgent(
            AgentSettings(
                store=store.url,
                work_dir=str(tmp_path / "agent"),
                broker=mosquitto.url,
                topic_prefix=hub.config.topic_prefix,
                client_id=f"trainer-test-{uuid.uuid4().hex[:8]}",
                kinds=["optimize"],
                job_timeout_s=300,
            )
        ).start()
        try:
            assert agent.subscribed.wait(10)
            request = {
                "kind": "optimize",
                "job": "race-1",
                "params": {
                    "track": "oval",
                    "population": 8,
                    "generations": 3,
                    "budget_s": 600,
                    "options": {"workers": 0, "mutation_sigma": 0.1},
                },
            }
            response = httpx.post(
                f"{hub.url}/jobs", json=request, timeout=30, headers={"Authorization": f"Bearer {hub.token}"}
            )
            assert response.status_code == 201, response.text
            entry = _wait_done(hub, "race-1")
            listed = hub.get("/jobs?kind=optimize")
        finally:
            agent.stop()
    result = entry["result"]
    assert entry["state"] == "succeeded", result
    assert result["artifacts"]["line"] == "races/race-1/line.csv"
    for key in result["artifacts"].values():
        assert store.exists(key), key
    saved = json.loads(store.get("races/race-1/result.json"))
    assert saved["generations"] == 3 and saved["best_lap"] == pytest.approx(result["metrics"]["best_lap"])
    assert 0 < result["metrics"]["best_lap"] < result["metrics"]["baseline_best_lap"]
    # progress per generation reached the hub (throttled to two a second; the last always goes out)
    generations = [p for p in entry["history"] if p.get("stage") == "generation"]
    assert generations and generations[-1]["epoch"] == 3 and generations[-1]["epochs"] == 3
    assert {"best", "mean", "std", "evals_per_s"} <= set(generations[-1]["metrics"])
    assert [j["job"] for j in listed] == ["race-1"]


def test_job_options_are_checked() -> None:
    line, evo, run = job_configs(
        OptimizeParams(track="oval", budget_s=5, options={"lateral_accel": 3.0, "fitness": "replay"})
    )
    assert line.lateral_accel == 3.0 and evo.budget_s == 5 and run.fitness == "replay"
    with pytest.raises(ValueError, match="unknown optimize options: grip"):
        job_configs(OptimizeParams(track="oval", options={"grip": 1}))
    with pytest.raises(ValueError, match="fitness"):
        job_configs(OptimizeParams(track="oval", options={"fitness": "guess"}))


def test_an_unknown_track_fails_the_job_with_its_name(tmp_path: Path) -> None:
    from trainer.pipeline import TrainerSettings

    settings = TrainerSettings(store=str(tmp_path / "store"), work_dir=str(tmp_path / "runs"))
    with pytest.raises(ValueError, match="nowhere"):
        run_optimize_job(OptimizeParams(track="nowhere"), settings, job="race-x")
