"""The trainer agent against a real broker and the real hub: a good job, bad jobs, registration."""

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.store import LocalStore
from schemas.messages import JobProgress, JobResult, TrainJob, TrainParams
from schemas.mqtt_url import BrokerUrl
from tests.trainer.hub_thread import HubThread
from trainer.agent import AgentSettings, TrainerAgent

OPTIONS = {"model": {"width": 64, "height": 32}, "threads": 1, "epochs": 2, "batch_size": 16}


class _Watcher:
    """Collects progress and results of every job."""

    def __init__(self, broker_url: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        url = BrokerUrl.parse(broker_url)
        self.progress: list[JobProgress] = []
        self.results: dict[str, JobResult] = {}
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, *_: c.subscribe("paddock/v1/jobs/+/+/+", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(url.host, url.port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        if msg.topic.endswith("/result"):
            r = JobResult.from_json(msg.payload)
            self.results[r.job] = r
        else:
            self.progress.append(JobProgress.from_json(msg.payload))

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def wait_for(self, *jobs: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(j in self.results for j in jobs):
            time.sleep(0.1)
        missing = [j for j in jobs if j not in self.results]
        assert not missing, f"no result for {missing}"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def agent_parts(
    tmp_path: Path, small_store: LocalStore, mosquitto: Any
) -> Iterator[tuple[TrainerAgent, _Watcher, HubThread]]:
    with HubThread(mosquitto.url, tmp_path / "hub") as hub:
        settings = AgentSettings(
            store=small_store.url,
            work_dir=str(tmp_path / "agent"),
            broker=mosquitto.url,
            hub=hub.url,
            hub_token=hub.token,
            export_formats=["onnx"],
            client_id=f"trainer-test-{uuid.uuid4().hex[:8]}",
            job_timeout_s=300,
        )
        watcher = _Watcher(mosquitto.url)
        agent = TrainerAgent(settings).start()
        assert agent.subscribed.wait(10)
        try:
            yield agent, watcher, hub
        finally:
            agent.stop()
            watcher.close()


@pytest.mark.slow
def test_agent_survives_bad_jobs_and_runs_a_good_one(
    agent_parts: tuple[TrainerAgent, _Watcher, HubThread], small_store: LocalStore, tmp_path: Path
) -> None:
    agent, watcher, hub = agent_parts
    topic = "paddock/v1/jobs/train"
    watcher.publish(topic, b"this is not json")
    watcher.publish(
        topic, json.dumps({"job": "bad-params", "kind": "train", "params": {"epochs": -3}}).encode()
    )
    missing = TrainJob(
        job="bad-data", params=TrainParams(sessions=[{"car": "car-9", "session": "nowhere"}], options=OPTIONS)
    )
    watcher.publish(topic, missing.to_json())
    good = TrainJob(
        job="good-1",
        params=TrainParams(model_name="pilot", model_version="v1", options=OPTIONS, seed=1),
    )
    watcher.publish(topic, good.to_json())
    watcher.wait_for("bad-params", "bad-data", "good-1")

    bad = watcher.results["bad-params"]
    assert bad.status == "failed" and "epochs" in (bad.error or "")
    data = watcher.results["bad-data"]
    assert data.status == "failed" and "no usable frames" in (data.error or ""), data.error
    result = watcher.results["good-1"]
    assert result.status == "succeeded", result.error
    assert result.model is not None and (result.model.name, result.model.version) == ("pilot", "v1")
    assert result.artifacts["onnx"] == "models/pilot/v1/model.onnx"
    for key in (
        "models/pilot/v1/model.onnx",
        "models/pilot/v1/card.json",
        "models/pilot/v1/report.json",
        "models/pilot/v1/loss.png",
        "models/pilot/v1/predictions.png",
    ):
        assert small_store.exists(key), key
    assert "steering_mae" in result.metrics
    # progress: the agent's own states and the training loop's epochs
    good_progress = [p for p in watcher.progress if p.job == "good-1"]
    assert good_progress[0].stage == "starting"
    assert [p.epoch for p in good_progress if p.stage == "epoch"] == [1, 2]
    assert good_progress[-1].state == "succeeded"
    assert [p.state for p in watcher.progress if p.job == "bad-data"][-1] == "failed"
    # registered with the (real) hub, with its lineage
    entry = hub.get("/models/pilot/v1")
    assert entry["format"] == "onnx" and entry["card"]["architecture"] == "mobilenet"  # TrainParams default
    exported = tmp_path / "agent" / "runs" / "good-1" / "export" / "model.onnx"
    assert entry["sha256"] == hashlib.sha256(exported.read_bytes()).hexdigest()
    lineage = entry["lineage"]
    assert lineage["job"] == "good-1" and lineage["run"] == "good-1"
    assert lineage["metrics"]["steering_mae"] == pytest.approx(result.metrics["steering_mae"])
    assert {s["session"] for s in lineage["sessions"] + lineage["val_sessions"]} == {
        "sess-0",
        "sess-1",
        "sess-2",
    }
    assert lineage["training"]["seed"] == 1 and lineage["training"]["launcher"] == "local"
    assert lineage["files"]["onnx"] == "models/pilot/v1/model.onnx"
    assert len(hub.get("/models")) == 1
    # A job delivered again (after a restart) is not run twice: its stored result is published again.
    again = agent.handle(topic, good.to_json())
    assert again is not None and again.status == "succeeded" and len(hub.get("/models")) == 1


def test_invalid_jobs_get_a_failed_result_on_both_brokers(
    tmp_path: Path, small_store: LocalStore, broker_url: str
) -> None:
    settings = AgentSettings(
        store=small_store.url,
        work_dir=str(tmp_path / "agent"),
        broker=broker_url,
        client_id=f"trainer-test-{uuid.uuid4().hex[:8]}",
    )
    watcher = _Watcher(broker_url)
    agent = TrainerAgent(settings).start()
    try:
        assert agent.subscribed.wait(10)
        watcher.publish("paddock/v1/jobs/train", b"\xff not json")
        wrong_kind = {
            "job": "wrong-kind",
            "kind": "evaluate",
            "params": {"model_name": "a", "model_version": "b", "track": "oval"},
        }
        watcher.publish("paddock/v1/jobs/train", json.dumps(wrong_kind).encode())
        watcher.publish("paddock/v1/jobs/train", json.dumps({"job": "no-params", "kind": "train"}).encode())
        watcher.wait_for("wrong-kind", "no-params", timeout=30)
    finally:
        agent.stop()
        watcher.close()
    assert "evaluate job on the train topic" in (watcher.results["wrong-kind"].error or "")
    assert "params" in (watcher.results["no-params"].error or "")
    assert all(r.status == "failed" for r in watcher.results.values())


def test_jobs_sent_while_the_agent_is_down_run_when_it_is_back(
    tmp_path: Path, small_store: LocalStore, broker_url: str
) -> None:
    settings = AgentSettings(
        store=small_store.url,
        work_dir=str(tmp_path / "agent"),
        broker=broker_url,
        client_id=f"trainer-test-{uuid.uuid4().hex[:8]}",
    )
    first = TrainerAgent(settings).start()
    assert first.subscribed.wait(10)
    first.stop()
    watcher = _Watcher(broker_url)
    try:
        # Invalid parameters: answered at once with a failed result, no training needed.
        job = {"job": "while-down", "kind": "train", "params": {"architecture": "linear", "batch_size": 0}}
        watcher.publish("paddock/v1/jobs/train", json.dumps(job).encode())
        second = TrainerAgent(settings).start()
        try:
            watcher.wait_for("while-down", timeout=30)
        finally:
            second.stop()
    finally:
        watcher.close()
    result = watcher.results["while-down"]
    assert result.status == "failed" and "batch_size" in (result.error or "")


@pytest.mark.slow
def test_an_evaluate_job_from_the_hub_is_recorded_as_an_evaluation(tmp_path: Path, mosquitto: Any) -> None:
    """The whole loop: the hub publishes an evaluate job, the agent fetches the model from the hub
    (its own store is empty), drives it in the simulator and reports; the hub records the evaluation."""
    import httpx
    import torch

    from tests.trainer.conftest import SMALL
    from trainer.export import export_onnx
    from trainer.hub_client import HubClient, Lineage
    from trainer.models import build_model

    torch.manual_seed(0)
    model = build_model("mobilenet", SMALL)
    onnx_path = export_onnx(model, tmp_path / "model.onnx")
    with HubThread(mosquitto.url, tmp_path / "hub") as hub:
        with HubClient(hub.url, hub.token) as client:
            entry = client.register_model(
                name="pilot", version="1", artifact=onnx_path, card=model.card(), lineage=Lineage(run="test")
            )
        assert (entry["name"], entry["version"]) == ("pilot", "1")
        settings = AgentSettings(
            store=str(tmp_path / "empty-store"),
            work_dir=str(tmp_path / "agent"),
            broker=mosquitto.url,
            topic_prefix=hub.config.topic_prefix,
            hub=hub.url,
            hub_token=hub.token,
            client_id=f"trainer-test-{uuid.uuid4().hex[:8]}",
        )
        agent = TrainerAgent(settings).start()
        try:
            assert agent.subscribed.wait(10)
            params = {"model_name": "pilot", "model_version": "1", "track": "oval", "laps": 1,
                      "options": {"video": False, "recover": True}}  # fmt: skip
            response = httpx.post(
                hub.url + "/jobs",
                json={"kind": "evaluate", "params": params},
                headers={"Authorization": f"Bearer {hub.token}"},
                timeout=30,
            )
            assert response.status_code == 201, response.text
            job = response.json()["job"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and hub.get(f"/jobs/{job}")["state"] not in (
                "succeeded",
                "failed",
            ):
                time.sleep(0.2)
            state = hub.get(f"/jobs/{job}")
        finally:
            agent.stop()
        assert state["state"] == "succeeded", state
        evaluations = hub.get("/models/pilot/1")["evaluations"]
    assert len(evaluations) == 1 and evaluations[0]["job"] == job
    metrics = evaluations[0]["metrics"]
    assert 0 <= metrics["completion_pct"] <= 100 and "off_track_count" in metrics
    assert (tmp_path / "empty-store" / "evals" / job / "report.json").exists()


def test_a_job_process_dies_with_its_agent() -> None:
    """An agent killed outright (SIGKILL) must not leave its job training for nobody."""
    import os
    import signal
    import subprocess
    import sys
    import time

    agent_code = (
        "import os, subprocess, sys, time\n"
        "env = {**os.environ, 'PADDOCK_AGENT_PID': str(os.getpid())}\n"
        "code = 'import time, trainer.job as j; getattr(j, \"_die_with_agent\", int)(); time.sleep(99)'\n"
        "job = subprocess.Popen([sys.executable, '-c', code], env=env, start_new_session=True)\n"
        "print(job.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    agent = subprocess.Popen([sys.executable, "-c", agent_code], stdout=subprocess.PIPE, text=True)
    assert agent.stdout is not None
    job_pid = int(agent.stdout.readline())
    time.sleep(1.0)  # the job has set its parent-death signal
    os.kill(job_pid, 0)  # alive
    agent.kill()
    agent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(job_pid, 0)
        except ProcessLookupError:
            return
        if _is_zombie(job_pid):  # dead, waiting for init to collect it
            return
        time.sleep(0.1)
    os.kill(job_pid, signal.SIGKILL)
    raise AssertionError("the job outlived its agent")


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
