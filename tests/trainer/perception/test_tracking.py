"""MLflow tracking against a real `mlflow server` on loopback: params, per-epoch metrics,
artefacts, nested search trials, the model and its registry version, and `paddock perceive runs`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.mlflow_server import MlflowServer, start_mlflow
from trainer.perception.pipeline import RunConfig, run
from trainer.perception.train import TrainConfig
from trainer.perception.validate import Thresholds


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.mark.timeout(900)  # a fresh server migrates its database and imports a lot: slow on a busy machine
def test_run_is_tracked_on_the_server(captured: Path, tmp_path: Path, mlflow_server: MlflowServer) -> None:
    from mlflow.tracking import MlflowClient

    config = RunConfig(
        data=str(captured),
        out=tmp_path / "run",
        train=TrainConfig(epochs=2, patience=2, batch_size=32),
        thresholds=Thresholds(min_per_class=0, max_imbalance=1e9),
        val_fraction=0.25,
        test_fraction=0.25,
        trials=2,
        epochs_per_trial=1,
        tracking_uri=mlflow_server.url,
        run_name="tracked",
    )
    summary = run(config)
    client = MlflowClient(tracking_uri=mlflow_server.url)
    parent = client.get_run(summary["mlflow"]["run_id"])
    assert parent.data.params["train.batch_size"] == "32" and parent.data.params["trials"] == "2"
    assert len(client.get_metric_history(parent.info.run_id, "val_score")) == 2  # one per epoch
    assert "test_obstacle_macro_f1" in parent.data.metrics
    artefacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/obstacle_confusion.png", "report/surface_roc.png", "report/metrics.json"} <= artefacts
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "detector")} >= {
        "detector/detector.onnx"
    }
    exp = client.get_experiment_by_name("perception")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 2 and all("lr" in c.data.params for c in children)
    versions = client.search_model_versions("name='perception-detector'")
    assert [v.run_id for v in versions] == [parent.info.run_id] and summary["mlflow"]["model_version"] == "1"
    listed = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "perceive", "runs", "--mlflow", mlflow_server.url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    out = json.loads(listed.stdout)
    assert {r["name"] for r in out["runs"]} >= {"tracked", "trial-0", "trial-1"}
    assert out["model_versions"][0]["version"] == "1"


@pytest.mark.timeout(900)
def test_a_pilot_onnx_becomes_a_registry_version_on_the_server(
    tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    """Behavioural-cloning and RL runs register the ONNX the car runs (Tracker.log_onnx;
    their own tests check the wiring on an SQLite store)."""
    import mlflow.onnx
    import onnx
    from mlflow.tracking import MlflowClient

    from tests.edge.modelkit import onnx_model
    from trainer.perception.tracking import Tracker

    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_model(width=80, height=60))
    tracker = Tracker(mlflow_server.url, "behavioural-cloning")
    with tracker.run("pilot:v7") as run_id:
        version = tracker.log_onnx(path, "bc-pilot", {"paddock.model": "bc-pilot:v7"})
    assert version == "1"
    client = MlflowClient(tracking_uri=mlflow_server.url)
    (registered,) = client.search_model_versions("name='bc-pilot'")
    assert registered.run_id == run_id and registered.tags["paddock.model"] == "bc-pilot:v7"
    mlflow.set_tracking_uri(mlflow_server.url)
    loaded = mlflow.onnx.load_model("models:/bc-pilot/1")
    assert loaded.SerializeToString() == onnx.load(str(path)).SerializeToString()
