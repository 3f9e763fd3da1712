"""`paddock rl` end to end: train within a budget, evaluate, export, compare; a reward function that
fails stops training with its traceback and the step's params, exit code 2."""

import json
from pathlib import Path

from typer.testing import CliRunner

from deploy.cli import app
from trainer.rl.files import REWARD_FILE, new_model

runner = CliRunner()
TINY = ["--set", "num_episodes_between_training=1", "--set", "num_epochs=1", "--set", "batch_size=16"]


def test_train_within_a_budget_then_evaluate_and_compare(tmp_path: Path) -> None:
    model = tmp_path / "m"
    new_model(model)
    out = runner.invoke(
        app,
        [
            "rl",
            "train",
            str(model),
            "--track",
            "oval",
            "--workers",
            "1",
            "--minutes",
            "0.1",
            "--no-live",
            "--json",
            *TINY,
        ],
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout[out.stdout.index("{") :])
    assert summary["stop_reason"] == "time budget of 0.1 min spent" and summary["steps"] > 0
    assert (model / "model.onnx").exists() and (model / "model_card.json").exists()
    ev = runner.invoke(
        app, ["rl", "evaluate", str(model), "--track", "oval", "--trials", "1", "--max-time", "5", "--json"]
    )
    assert ev.exit_code == 0, ev.output
    report = json.loads(ev.stdout[ev.stdout.index("{") :])
    assert report["summary"]["trials"] == 1 and (model / "evaluation-oval" / "simtrace.csv").exists()
    cmp = runner.invoke(
        app, ["rl", "compare", str(model / "evaluation-oval"), "--plot", str(tmp_path / "c.png")]
    )
    assert cmp.exit_code == 0 and (tmp_path / "c.png").exists()


def test_a_failing_reward_function_stops_training_with_its_traceback(tmp_path: Path) -> None:
    new_model(tmp_path)
    (tmp_path / REWARD_FILE).write_text("def reward_function(params):\n    return params['no_such_key']\n")
    out = runner.invoke(
        app, ["rl", "train", str(tmp_path), "--track", "oval", "--workers", "1", "--no-live", *TINY]
    )
    assert out.exit_code == 2
    assert "training stopped" in out.output and "raised KeyError" in out.output
    assert "return params['no_such_key']" in out.output and "the step's params" in out.output


def test_bad_inputs_are_one_line(tmp_path: Path) -> None:
    new_model(tmp_path)
    for args in (["--track", "nowhere"], ["--track", "oval", "--set", "lr=-1"]):
        out = runner.invoke(app, ["rl", "train", str(tmp_path), "--no-live", *args])
        assert out.exit_code == 2 and out.output.count("error:") == 1, out.output
    assert "lr" in out.output and "hyperparameters.json" in out.output
    ev = runner.invoke(app, ["rl", "evaluate", str(tmp_path / "none"), "--track", "oval"])
    assert ev.exit_code == 2 and "no such model directory" in ev.output
    for command in ("train", "evaluate"):
        bad = runner.invoke(app, ["rl", command, str(tmp_path), "--track", "oval", "--race-type", "drag"])
        assert bad.exit_code == 2 and "head_to_head" in bad.output and "Traceback" not in bad.output
