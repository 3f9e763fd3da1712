"""`paddock train …` end to end: record, train, export, evaluate, and clear errors."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app

runner = CliRunner()
SMALL = ["--set", "model.width=64", "--set", "model.height=32", "--set", "threads=1"]


def test_help_lists_the_subcommands() -> None:
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for name in ("train", "export", "evaluate", "agent", "record", "quickstart"):
        assert name in result.output


@pytest.mark.slow
def test_record_train_export_evaluate(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    rec = runner.invoke(app, ["train", "record", "--store", store, "--sessions", "2", "--laps", "0.5"])
    assert rec.exit_code == 0, rec.output
    assert "sim-expert/expert-oval-0" in rec.output

    train = runner.invoke(
        app,
        ["train", "train", "--store", store, "--epochs", "1", "--batch-size", "16", "--formats", "onnx",
         *SMALL, "--work-dir", str(tmp_path / "runs"), "--version", "v1", "--no-progress",
         "--mlflow", f"sqlite:///{tmp_path / 'mlflow.db'}"],
    )  # fmt: skip
    assert train.exit_code == 0, train.output
    from trainer.perception.tracking import list_runs, model_versions

    (tracked,) = list_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "behavioural-cloning")
    assert tracked["name"] == "pilot:v1" and tracked["status"] == "FINISHED"
    assert {"train_loss", "val_loss", "steering_mae"} <= set(tracked["metrics"]), tracked["metrics"]
    (version,) = model_versions(f"sqlite:///{tmp_path / 'mlflow.db'}", "pilot")
    assert version["run_id"] == tracked["run_id"] and str(version["version"]) == "1"
    assert "registry pilot version 1" in " ".join(train.output.split())
    result = json.loads(train.output[train.output.index("{") :])
    assert result["status"] == "succeeded" and result["artifacts"]["onnx"] == "models/pilot/v1/model.onnx"
    checkpoint = tmp_path / "runs" / "pilot-v1" / "checkpoints" / "best.pt"
    assert checkpoint.exists()

    export = runner.invoke(app, ["train", "export", str(checkpoint), "--out", str(tmp_path / "exp"),
                                 "--formats", "onnx,onnx-int8"])  # fmt: skip
    assert export.exit_code == 0, export.output
    assert (tmp_path / "exp" / "model.onnx").exists() and (tmp_path / "exp" / "model.int8.onnx").exists()

    evaluate = runner.invoke(
        app,
        ["train", "evaluate", str(tmp_path / "exp" / "model.onnx"), "--track", "oval", "--track", "s-curve",
         "--laps", "1", "--recover", "--no-video", "--out", str(tmp_path / "eval")],
    )  # fmt: skip
    assert evaluate.exit_code in (0, 1), evaluate.output  # 1 = the one-epoch model did not finish a lap
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert [r["track"] for r in report["closed_loop"]] == ["oval", "s-curve"]
    assert all(r["recover"] is True for r in report["closed_loop"])
    assert (tmp_path / "eval" / "closed-loop" / "s-curve" / "simtrace.csv").exists()

    offline = runner.invoke(app, ["train", "evaluate", str(checkpoint), "--out", str(tmp_path / "off")])
    assert offline.exit_code == 0, offline.output
    assert "steering_mae" in offline.output
    assert "steering_mae" in json.loads((tmp_path / "off" / "report.json").read_text())["offline"]["metrics"]


def test_errors_are_clear(tmp_path: Path) -> None:
    empty = runner.invoke(app, ["train", "train", "--store", str(tmp_path / "nothing"), "--no-progress"])
    assert empty.exit_code == 2 and "no training sessions" in empty.output
    bad = runner.invoke(app, ["train", "train", "--store", str(tmp_path), "--session", "no-slash"])
    assert bad.exit_code == 2 and "CAR/SESSION" in bad.output
    options = runner.invoke(app, ["train", "train", "--store", str(tmp_path), "--set", "bogus=1"])
    assert options.exit_code == 2 and "bogus" in options.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    ev = runner.invoke(app, ["train", "evaluate", str(junk), "--track", "oval"])
    assert ev.exit_code == 2 and "not a readable checkpoint" in ev.output
