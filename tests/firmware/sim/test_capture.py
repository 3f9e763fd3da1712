"""`paddock sim capture`: labelled frames, lidar CSV and manifests in the hub's dataset layout."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from firmware.sim.capture import CaptureConfig, capture
from schemas.dataset import SessionManifest
from schemas.shards import ReadStats, read_shard


def test_capture_writes_shards_labels_lidar_and_manifest(tmp_path: Path) -> None:
    manifests = capture(tmp_path, "oval", CaptureConfig(sessions=2, frames=24, per_shard=15), seed=5)
    assert [m.session for m in manifests] == ["scene-oval-5", "scene-oval-6"]
    surfaces = set()
    for m in manifests:
        folder = tmp_path / "datasets" / "sim-capture" / m.session
        on_disk = SessionManifest.model_validate_json((folder / "manifest.json").read_bytes())
        assert on_disk.state == "sealed" and on_disk.frame_count == 24 and len(on_disk.shards) == 2
        stats = ReadStats()
        samples = [s for shard in on_disk.shards for s in read_shard((folder / shard.name).open("rb"), stats)]
        assert stats.skipped == 0 and [s.seq for s in samples] == list(range(24))
        for s in samples:
            labels = s.record["labels"]
            assert labels["obstacle_ahead"] in ("none", "box", "cone", "wall", "car")
            assert isinstance(labels["ahead_ambiguous"], bool)
            assert labels["surface_ahead"] in ("asphalt", "wood", "carpet", "tile", "offtrack")
            assert all({"kind", "distance", "bearing"} <= set(o) for o in labels["in_view"])
            assert -1 <= s.record["steering"] <= 1
        scene = json.loads((folder / "scene.json").read_text())
        surfaces.add(scene["surface"])
        assert any(o["kind"] for o in scene["obstacles"])
        rows = list(csv.reader((folder / "lidar.csv").open()))
        header, body = rows[0], rows[1:]
        assert header[:5] == ["seq", "t_s", "x", "y", "yaw"] and len(header) == 5 + scene["lidar"]["beams"]
        assert [int(r[0]) for r in body] == list(range(24))
        ranges = [float(v) for r in body for v in r[5:]]
        assert min(ranges) >= scene["lidar"]["min_range"] and max(ranges) <= scene["lidar"]["max_range"]
        assert min(ranges) < scene["lidar"]["max_range"]  # it sees borders and obstacles
    assert len(surfaces) == 2  # surfaces go round per session


def test_capture_command(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    cmd = [sys.executable, "-m", "deploy.cli", "sim", "capture", "--track", "technical", "--out", str(out)]
    done = subprocess.run(
        [*cmd, "--sessions", "1", "--frames", "6", "--json"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["frames"] == 6
    assert (out / "datasets" / "sim-capture" / "scene-technical-0" / "lidar.csv").exists()
    bad = subprocess.run([*cmd, "--car", "Not Valid", "--frames", "2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid car id" in bad.stderr and "Traceback" not in bad.stderr


def _shot_labels(tmp_path: Path, far_shots: float) -> list[dict[str, object]]:
    config = CaptureConfig(sessions=1, frames=40, shots=0.75, far_shots=far_shots)
    (m,) = capture(tmp_path / str(far_shots), "oval", config, seed=2)
    folder = tmp_path / str(far_shots) / "datasets" / "sim-capture" / m.session
    samples = [s for shard in m.shards for s in read_shard((folder / shard.name).open("rb"), ReadStats())]
    return [s.record["labels"] for s in samples[-30:]]  # the shots come last


def _ahead_beyond_band(seen: dict[str, float]) -> bool:
    return 1.5 < seen["distance"] <= 3.0 and abs(seen["bearing"]) < 30


def test_far_shots_show_an_obstacle_beyond_the_corridor_as_none(tmp_path: Path) -> None:
    near, far = _shot_labels(tmp_path, 0.0), _shot_labels(tmp_path, 1.0)
    assert sum(lab["obstacle_ahead"] != "none" for lab in near) >= 18  # near shots face one ahead
    clear = [lab for lab in far if lab["obstacle_ahead"] == "none" and not lab["ahead_ambiguous"]]
    assert len(clear) >= 24
    # and the obstacle is in view, ahead, beyond the corridor and its band: a hard "none"
    seen = [lab for lab in clear if any(_ahead_beyond_band(o) for o in lab["in_view"])]  # type: ignore[attr-defined]
    assert len(seen) >= 18
