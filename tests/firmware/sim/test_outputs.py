"""What people look at: `paddock sim` commands, the simtrace CSV, videos and track maps."""

import csv
import json
from pathlib import Path

import cv2
import imageio.v2 as imageio
import pytest
from typer.testing import CliRunner

from deploy.cli import app
from firmware.sim.expert import ExpertDriver
from firmware.sim.media import plot_track_map
from firmware.sim.reward import load_reward_function
from firmware.sim.run import drive
from firmware.sim.simtrace import SIMTRACE_COLUMNS, SimTraceWriter
from firmware.sim.world import World

runner = CliRunner()


def test_simtrace_has_deepracers_19_columns(tmp_path: Path) -> None:
    assert len(SIMTRACE_COLUMNS) == 19
    world = World("oval")
    path = tmp_path / "trace.csv"
    reward = load_reward_function(_reward_file(tmp_path))
    with SimTraceWriter(path) as trace:
        result = drive(
            world, ExpertDriver(world.track, world.config.car), laps=1, simtrace=trace, reward_function=reward
        )
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == list(SIMTRACE_COLUMNS)
    assert len(rows) == result.steps
    assert [int(r["steps"]) for r in rows[:3]] == [1, 2, 3]
    last = rows[-1]
    assert last["episode_status"] == "lap_complete" and last["done"] == "True"
    assert float(last["progress"]) == 100.0
    assert float(last["track_len"]) == pytest.approx(world.track.length, abs=0.01)
    assert all(r["all_wheels_on_track"] == "True" for r in rows)
    assert {float(r["reward"]) for r in rows} == {1.0}
    # closest_waypoint walks around the track.
    assert int(rows[len(rows) // 2]["closest_waypoint"]) == pytest.approx(len(world.track.center) / 2, abs=5)


def _reward_file(tmp_path: Path) -> Path:
    path = tmp_path / "reward.py"
    path.write_text(
        "def reward_function(params):\n"
        "    return 1.0 if params['distance_from_center'] < 0.25 * params['track_width'] else 0.0\n"
    )
    return path


def test_sim_run_writes_video_map_and_simtrace(tmp_path: Path) -> None:
    video, png, trace = tmp_path / "lap.mp4", tmp_path / "map.png", tmp_path / "trace.csv"
    result = runner.invoke(
        app,
        [
            "sim", "run", "--track", "s-curve", "--laps", "1", "--fps", "10",
            "--video", str(video), "--map", str(png), "--simtrace", str(trace),
            "--reward", str(_reward_file(tmp_path)), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["laps"] == 1 and summary["finished"] and summary["off_track"] == 0
    assert 8 < summary["lap_times"][0] < 20
    assert summary["total_reward"] > 0
    reader = imageio.get_reader(video)
    first = reader.get_data(0)
    assert first.shape == (480, 640, 3)
    assert reader.count_frames() == pytest.approx(summary["lap_times"][0] * 10, abs=2)
    assert cv2.imread(str(png)).shape[1] > 800
    assert len(trace.read_text().splitlines()) > 50


def test_sim_run_prints_lap_times_and_errors_clearly(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sim", "run", "--track", "oval", "--laps", "1", "--fps", "10"])
    assert result.exit_code == 0, result.output
    assert "lap 1:" in result.output
    bad = runner.invoke(app, ["sim", "run", "--track", "nowhere"])
    assert bad.exit_code == 2 and "neither a built-in track" in bad.output
    bad = runner.invoke(app, ["sim", "run", "--video", str(tmp_path / "x.avi")])
    assert bad.exit_code == 2 and ".mp4 or .gif" in bad.output
    broken = tmp_path / "broken.py"
    broken.write_text("def reward_function(params):\n    return 'fast'\n")
    bad = runner.invoke(app, ["sim", "run", "--laps", "1", "--reward", str(broken)])
    assert bad.exit_code == 2 and "broken.py" in bad.output and "must return a number" in bad.output


def test_sim_tracks_frame_and_map_commands(tmp_path: Path, tracks_dir: Path) -> None:
    result = runner.invoke(app, ["sim", "tracks", str(tracks_dir)])
    assert result.exit_code == 0
    for name in ("oval", "s-curve", "technical", "reinvent_base"):
        assert name in result.output
    frame = tmp_path / "frame.png"
    result = runner.invoke(
        app, ["sim", "frame", "--track", "technical", "--progress", "30", "-o", str(frame)]
    )
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(frame)).shape == (120, 160, 3)
    big = tmp_path / "map.png"
    assert runner.invoke(app, ["sim", "map", "--track", "oval", "-o", str(big)]).exit_code == 0
    assert big.stat().st_size > 10_000


def test_track_map_with_a_trace(tmp_path: Path) -> None:
    world = World("technical")
    result = drive(world, ExpertDriver(world.track, world.config.car), laps=1)
    out = plot_track_map(world.track, tmp_path / "t.png", result.trace, result.speeds, title="technical")
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 300


def test_gif_video(tmp_path: Path) -> None:
    from firmware.sim.media import VideoWriter

    world = World("oval")
    with VideoWriter(tmp_path / "clip.gif", world.track, fps=10) as video:
        for _ in range(5):
            world.step(0.0, 0.5)
            video.add(world.render(), *world.car.front_point(), hud="lap 1/1")
    frames = imageio.mimread(tmp_path / "clip.gif")
    assert len(frames) == 5 and frames[0].shape[:2] == (240, 320)
    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        VideoWriter(tmp_path / "clip.avi", world.track, fps=10)
