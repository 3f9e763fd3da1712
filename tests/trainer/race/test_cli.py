"""``paddock race optimize``: its files, its JSON, and one clear line for a bad input."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app

runner = CliRunner()


def test_optimize_writes_the_line_and_prints_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "race",
            "optimize",
            "--track",
            "technical",
            "--population",
            "8",
            "--generations",
            "2",
            "--workers",
            "0",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["track"] == "technical" and summary["finished"]
    assert 0 < summary["best_lap"] < summary["baseline_best_lap"]
    assert summary["wheels_off_steps"] == 0 and summary["off_track"] == 0
    lines = Path(summary["line"]).read_text().splitlines()
    assert lines[0] == "s,x,y,offset_m,speed_mps,curvature" and len(lines) > 100
    assert Path(summary["map"]).read_bytes()[:4] == b"\x89PNG"
    assert Path(summary["history_plot"]).read_bytes()[:4] == b"\x89PNG"
    data = json.loads(Path(summary["result"]).read_text())
    assert [h["generation"] for h in data["history"]] == [0, 1, 2]
    assert {"best", "mean", "std"} <= set(data["history"][0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--track", "nowhere"], "neither a built-in track"),
        (["--set", "grip"], "--set expects KEY=VALUE"),
        (["--set", "grip=3"], "--set grip: unknown setting"),
        (["--set", "lateral_accel=-1"], "lateral_accel must be positive"),
        (["--fitness", "guess"], "--fitness must be"),
    ],
)
def test_a_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    res = runner.invoke(app, ["race", "optimize", "--workers", "0", "--out", str(tmp_path), *args])
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_another_runs_checkpoint_is_refused_with_a_hint(tmp_path: Path) -> None:
    base = [
        "optimize",
        "--track",
        "oval",
        "--population",
        "4",
        "--generations",
        "0",
        "--workers",
        "0",
        "--out",
        str(tmp_path),
    ]
    assert runner.invoke(app, ["race", *base, "--seed", "1"]).exit_code == 0
    res = runner.invoke(app, ["race", *base, "--seed", "2"])
    assert res.exit_code == 2 and "--restart" in res.output
    assert runner.invoke(app, ["race", *base, "--seed", "2", "--restart"]).exit_code == 0
