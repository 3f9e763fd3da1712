"""The demo end to end, reduced: two simulated cars record, a model is trained over MQTT, signed,
deployed, hot-swapped while driving, and completes a lap on its own."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from deploy.demo import Demo, DemoError, DemoOptions


@pytest.mark.timeout(600)
async def test_a_reduced_demo_records_trains_deploys_and_laps(tmp_path: Path) -> None:
    options = DemoOptions(
        cars=2,
        record_laps=1,
        race_laps=1,
        epochs=10,
        evaluate_laps=1,
        export_formats=("onnx",),
        directory=tmp_path / "demo",
        stage_timeout_s=300,
    )
    console = Console(record=True, width=120, force_terminal=False)
    report = await Demo(options, console).run()

    assert report["frames"]["recorded"] > 300
    assert report["frames"]["lost"] == 0
    assert report["frames"]["persisted"] == report["frames"]["recorded"]
    for car in ("car-1", "car-2"):
        c = report["cars"][car]
        assert c["frames_lost"] == 0
        assert c["hot_swap_ms"] is not None and c["hot_swap_ms"] > 0
        assert len(c["autopilot_lap_times_s"]) >= 1, f"{car} did not complete a lap on the model"
        assert len(c["expert_lap_times_s"]) >= 1
    assert report["model"]["name"] == "pilot"
    assert 0 < report["time_to_first_autonomous_lap_s"] < report["total_s"]

    out = tmp_path / "demo" / "report"
    assert json.loads((out / "report.json").read_text())["frames"]["lost"] == 0
    for name in ("lap_times.png", "trace_car-1.png", "autopilot_lap.mp4"):
        assert (out / name).stat().st_size > 1000, name
    text = console.export_text()
    assert "record 1 expert laps per car" in text and "first autonomous lap" in text


def test_the_demo_refuses_a_directory_that_is_not_its_own(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    demo = Demo(DemoOptions(directory=tmp_path), Console(force_terminal=False))
    with pytest.raises(DemoError, match="not a paddock demo directory"):
        demo._prepare_directory()
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_a_second_run_replaces_the_first_and_a_running_one_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    first = Demo(DemoOptions(directory=root), Console(force_terminal=False))
    first._prepare_directory()
    (root / "stack").mkdir()
    (root / "stack" / "old.txt").write_text("old state")
    second = Demo(DemoOptions(directory=root), Console(force_terminal=False))
    with pytest.raises(DemoError, match="another demo is running"):
        second._prepare_directory()
    first._release_directory()
    second._prepare_directory()
    assert not (root / "stack").exists()
    second._release_directory()


@pytest.mark.parametrize(
    ("field", "value"), [("cars", 0), ("cars", 9), ("record_laps", 0), ("race_laps", 21), ("epochs", 0)]
)
def test_bad_options_are_clear_errors(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field.replace("_", "-")):
        DemoOptions(**{field: value})


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_demo_while_it_trains_leaves_no_process_and_no_corrupt_file(
    tmp_path: Path, signum: int
) -> None:
    root = tmp_path / "demo"
    command = [sys.executable, "-m", "deploy.cli", "demo", "--out", str(root), "--cars", "1"]
    command += ["--record-laps", "1", "--epochs", "30", "--no-video"]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Ctrl-C is SIGINT at its default disposition, whatever the test runner's parent set
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    output: list[str] = []
    for line in proc.stdout:
        output.append(line)
        if "sent to the trainer agent" in line:
            break
    else:
        pytest.fail("the demo ended before training:\n" + "".join(output))
    deadline = time.monotonic() + 60
    while not any(
        "trainer.job" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
        for p in _descendants(proc.pid)
        if _alive(p)
    ):
        assert time.monotonic() < deadline, "no training process started"
        time.sleep(0.2)
    family = _descendants(proc.pid)
    assert family, "the demo has no child processes (the hub's sealer, the training job)"

    proc.send_signal(signum)
    rest, _ = proc.communicate(timeout=90)
    text = "".join(output) + rest
    assert proc.returncode == 130, text
    assert "interrupted: everything was stopped" in text
    left = [pid for pid in family if _alive(pid)]
    assert not left, f"processes outlived the demo: {left}"

    for db in (root / "stack" / "hub").glob("*.sqlite"):
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",), db
    manifests = list((root / "stack" / "hub" / "store" / "datasets" / "car-1").glob("*/manifest.json"))
    assert len(manifests) == 1, "the recorded session has no manifest"
    session = json.loads(manifests[0].read_text())
    # Preview frames share the car's frame seqs, so a session starts wherever recording began.
    span = session["seq_last"] - session["seq_first"] + 1
    assert session["state"] == "sealed" and session["gaps"] == []
    assert session["frame_count"] == span > 300


def test_the_demo_exports_tflite_only_where_litert_torch_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from deploy import demo

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "litert_torch" else real(name, *a)
    )
    assert demo.DemoOptions().export_formats == ("onnx", "onnx-int8")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    assert demo.DemoOptions().export_formats == ("onnx", "onnx-int8", "tflite")
