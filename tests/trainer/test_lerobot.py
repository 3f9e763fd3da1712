"""LeRobot datasets (v3.0) in and out, checked with LeRobot 0.4's own LeRobotDataset.

LeRobot runs in its own environment (script/lerobot-env: it pins torch<2.11). One process there
(it takes ~30 s to import) loads paddock's export of two recorded sessions with ``LeRobotDataset``
and writes a dataset with LeRobot's own writer (``LeRobotDataset.create``, ``add_frame``,
``save_episode``), which paddock then imports, here and onto a real hub.
"""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy.cli import app
from infra.store import LocalStore
from schemas.messages import SessionRef
from tests.missing import venv_python
from tests.trainer.hub_thread import HubThread
from trainer.data import load_frames
from trainer.interop.sessions import frame_action, session_samples
from trainer.record import RecordConfig, record_expert

LEROBOT_VENV = Path(os.environ.get("PADDOCK_LEROBOT_VENV", Path.home() / ".cache/paddock/lerobot-venv"))
NATIVE_FPS, NATIVE_EPISODES, NATIVE_FRAMES = NATIVE = (10, 2, 12)

LEROBOT = """
import json, sys
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

exported, native = sys.argv[1], sys.argv[2]
fps, episodes, length = (int(v) for v in sys.argv[3:6])
ds = LeRobotDataset("paddock/export", root=exported)
frames = [ds[i] for i in range(len(ds))]
read = {
    "len": len(ds), "episodes": ds.num_episodes, "fps": ds.fps, "backend": ds.video_backend,
    "features": sorted(ds.features),
    "actions": [[float(v) for v in f["action"]] for f in frames],
    "episode_index": [int(f["episode_index"]) for f in frames],
    "speed": [float(f["observation.state"].reshape(-1)[0]) for f in frames],
    "shape": list(frames[0]["observation.images.front"].shape),
    "pixels": [np.asarray(f["observation.images.front"]).mean(axis=(1, 2)).tolist() for f in frames],
}
features = {
    "observation.images.front": {
        "dtype": "video", "shape": (48, 64, 3), "names": ["height", "width", "channels"]
    },
    "action": {"dtype": "float32", "shape": (2,), "names": ["steering", "throttle"]},
}
out = LeRobotDataset.create("paddock/native", fps=fps, features=features, root=native, use_videos=True)
for episode in range(episodes):
    for i in range(length):
        image = np.zeros((48, 64, 3), np.uint8)
        image[..., 0] = 20 * i  # red rises with the frame index, green with the episode
        image[..., 1] = 100 * episode
        action = np.array([np.sin(i / 3 + episode), 0.25 + 0.05 * episode], np.float32)
        out.add_frame({"observation.images.front": image, "action": action, "task": "drive"})
    out.save_episode()
out.finalize()
print(json.dumps(read))
"""


def native_action(episode: int, i: int) -> tuple[float, float]:
    return float(np.float32(np.sin(i / 3 + episode))), float(np.float32(0.25 + 0.05 * episode))


@pytest.fixture(scope="module")
def lerobot_python() -> Path:
    return venv_python(LEROBOT_VENV, "LeRobot", "script/lerobot-env")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, list[str]]:
    """Two short sessions recorded by the simulator's expert, as `paddock train record` does."""
    store = LocalStore(tmp_path_factory.mktemp("recorded"))
    config = RecordConfig(laps=0.1, noise_std=0.1, randomize=False)
    manifests = record_expert(store, "oval", sessions=2, car="sim-1", seed=0, config=config)
    return store, [m.session for m in manifests]


@pytest.fixture(scope="module")
def lerobot_run(
    lerobot_python: Path, recorded: tuple[LocalStore, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Export the recorded sessions, then one LeRobot process: read the export, write its own."""
    store, sessions = recorded
    root = tmp_path_factory.mktemp("lerobot")
    exported, native = root / "exported", root / "native"
    args = ["data", "export-lerobot", str(exported), "--store", str(store.root), "--json"]
    for session in sessions:
        args += ["--session", f"sim-1/{session}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    done = subprocess.run(
        [str(lerobot_python), "-c", LEROBOT, str(exported), str(native), *map(str, NATIVE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    read = json.loads(done.stdout.strip().splitlines()[-1])
    report = json.loads(result.output[result.output.index("{") :])
    return {"read": read, "report": report, "exported": exported, "native": native}


def test_export_is_read_by_lerobots_own_dataset(
    lerobot_run: dict[str, Any], recorded: tuple[LocalStore, list[str]]
) -> None:
    store, sessions = recorded
    read = lerobot_run["read"]
    samples = [list(session_samples(store, "sim-1", s)) for s in sessions]
    assert read["len"] == sum(len(s) for s in samples) == lerobot_run["report"]["frames"]
    assert read["episodes"] == 2 and read["fps"] == lerobot_run["report"]["fps"]
    assert read["backend"] == "torchcodec"  # LeRobot's own default decoder, not a fallback
    assert {"action", "observation.images.front", "observation.state"} <= set(read["features"])
    # Actions exactly (float32), in order, episode by episode.
    expected = [frame_action(x.record) for s in samples for x in s]
    assert read["actions"] == [[float(np.float32(a)), float(np.float32(b))] for a, b in expected]
    assert read["episode_index"] == [0] * len(samples[0]) + [1] * len(samples[1])
    speeds = [float(np.float32(x.record["speed"])) for s in samples for x in s]
    assert read["speed"] == speeds
    # The video decodes to the recorded frames (lossy: mean colour within a few levels).
    assert read["shape"] == [3, 120, 160]
    import cv2

    originals = [
        cv2.imdecode(np.frombuffer(x.jpeg, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        for s in samples
        for x in s
    ]
    for decoded, original in zip(read["pixels"], originals, strict=True):
        assert np.abs(np.array(decoded) - original.mean(axis=(0, 1)) / 255).max() < 0.04


def test_import_of_a_dataset_lerobot_wrote(lerobot_run: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "store"
    native = lerobot_run["native"]
    result = CliRunner().invoke(
        app, ["data", "import-lerobot", str(native), "--store", str(store), "--car", "lerobot-1", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])[str(native)]
    assert report["skipped"] == 0 and report["clipped"] == 0
    assert sorted(report["sessions"].values()) == [NATIVE_FRAMES] * NATIVE_EPISODES
    for episode, session in enumerate(sorted(report["sessions"])):
        table = load_frames(LocalStore(store), [SessionRef(car="lerobot-1", session=session)])
        assert list(table.seqs) == list(range(NATIVE_FRAMES))
        for i in range(NATIVE_FRAMES):
            assert tuple(float(v) for v in table.actions[i][:2]) == pytest.approx(
                native_action(episode, i), abs=1e-7
            )
            image = table.image(i)
            assert image.shape == (48, 64, 3)
            assert abs(float(image[..., 0].mean()) - 20 * i) < 8  # the frame's own image, in order
            assert abs(float(image[..., 1].mean()) - 100 * episode) < 8


def test_import_with_hub_puts_episodes_in_the_hubs_catalog(
    lerobot_run: dict[str, Any], tmp_path: Path, mosquitto: Any
) -> None:
    import httpx

    with HubThread(mosquitto.url, tmp_path / "hub") as hub:
        args = ["data", "import-lerobot", str(lerobot_run["native"]), "--hub", hub.url, "--token", hub.token]
        result = CliRunner().invoke(app, [*args, "--car", "lerobot-1"])
        assert result.exit_code == 0, result.output
        listed = httpx.get(f"{hub.url}/sessions", params={"car": "lerobot-1"}, timeout=30).json()
        assert listed["total"] == NATIVE_EPISODES
        assert all(s["state"] == "sealed" and s["frame_count"] == NATIVE_FRAMES for s in listed["sessions"])
        thumb = httpx.get(
            f"{hub.url}/sessions/lerobot-1/{listed['sessions'][0]['session']}/thumbnail", timeout=30
        )
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"


def test_bad_inputs_are_one_line_and_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["data", "import-lerobot", str(tmp_path), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2 and "meta/info.json: missing" in result.output
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text(
        json.dumps({"codebase_version": "v2.1", "fps": 30, "features": {}})
    )
    result = runner.invoke(app, ["data", "import-lerobot", str(tmp_path), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2 and "v2.1" in result.output and "convert" in result.output
    result = runner.invoke(app, ["data", "import-lerobot", str(tmp_path)])
    assert result.exit_code == 2 and "--store" in result.output and "--hub" in result.output
    result = runner.invoke(
        app,
        ["data", "export-lerobot", str(tmp_path / "o"), "--store", str(tmp_path), "--session", "car-1/nope"],
    )
    assert result.exit_code == 2 and "no session car-1/nope" in result.output
