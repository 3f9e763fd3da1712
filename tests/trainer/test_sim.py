"""Recording the simulator's expert and driving trained models in closed loop."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from infra.store import LocalStore
from schemas.dataset import SessionManifest, session_manifest_key
from schemas.messages import EvaluateParams, FrameRecord
from schemas.shards import read_shard
from trainer.data import list_sessions, load_frames
from trainer.evaluate import ClosedLoopReport, closed_loop, run_evaluate_job
from trainer.pipeline import TrainerSettings
from trainer.quickstart import DEMO, QuickstartResult, run_quickstart
from trainer.record import RecordConfig, record_expert


def test_recorded_expert_laps_are_a_dataset_in_the_hubs_layout(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    manifests = record_expert(store, "s-curve", sessions=2, config=RecordConfig(laps=0.5, per_shard=40))
    assert [m.session for m in manifests] == ["expert-s-curve-0", "expert-s-curve-1"]
    m = SessionManifest.from_json(store.get(session_manifest_key("sim-expert", "expert-s-curve-0")))
    assert m.state == "sealed" and m.frame_count == manifests[0].frame_count > 50
    assert len(m.shards) == -(-m.frame_count // 40)
    assert m.stats.width == 160 and m.stats.height == 120
    assert [(r.car, r.session) for r in list_sessions(store)] == [(x.car, x.session) for x in manifests]
    table = load_frames(store, list_sessions(store))
    assert len(table) == sum(x.frame_count for x in manifests)
    assert table.report.skipped_frames == 0
    assert table.image(0).shape == (120, 160, 3)
    # The expert turns (an S-curve) and drives forward; its labels are valid frame records.
    steering = table.actions[:, 0]
    assert steering.min() < -0.1 and steering.max() > 0.1
    assert (table.actions[:, 1] > 0).all()
    first = next(read_shard(io.BytesIO(store.get("datasets/sim-expert/expert-s-curve-0/shard-000000.tar"))))
    record = FrameRecord.from_dict(first.record)
    assert record.session == "expert-s-curve-0" and record.mode == "manual"
    assert {"x", "y", "yaw", "progress", "track"} <= set(first.record)
    # Same seed, same frames.
    again = LocalStore(tmp_path / "again")
    record_expert(again, "s-curve", sessions=1, config=RecordConfig(laps=0.5, per_shard=40))
    key = "datasets/sim-expert/expert-s-curve-0/shard-000000.tar"
    assert again.get(key) == store.get(key)


class _Straight:
    """A pilot that ignores the camera and drives straight on: it leaves the oval at the first bend."""

    card = None

    def act(self, image: np.ndarray) -> tuple[float, float]:
        assert image.shape == (120, 160, 3)
        return 0.0, 0.4


def test_closed_loop_reports_an_off_track_run_with_its_files(tmp_path: Path) -> None:
    report = closed_loop(_Straight(), "oval", laps=2, out_dir=tmp_path, video=True)  # type: ignore[arg-type]
    assert report.episode_status == "off_track"
    assert report.laps_completed == 0 and 0 < report.completion_pct < 50
    assert report.off_track_count == 1 and report.lap_times == []
    assert report.expert_lap_time_s is not None and report.expert_lap_time_s > 5
    assert sorted(report.files) == ["map", "simtrace", "video"]
    with open(report.files["simtrace"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == report.steps and rows[-1]["episode_status"] == "off_track"
    assert Path(report.files["video"]).stat().st_size > 10_000
    assert Path(report.files["map"]).read_bytes()[:4] == b"\x89PNG"
    assert ClosedLoopReport.model_validate_json((tmp_path / "report.json").read_text()) == report
    # With recovery the car is put back on the centre line and goes on; every excursion counts.
    recovering = closed_loop(_Straight(), "oval", laps=1, recover=True, max_time_s=30, video=False)  # type: ignore[arg-type]
    assert recovering.off_track_count >= 2 and recovering.recover


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[QuickstartResult, Path]:
    root = tmp_path_factory.mktemp("quickstart")
    return run_quickstart(str(root / "store"), root / "runs", DEMO, model_version="demo"), root


@pytest.mark.slow
def test_a_model_trained_on_expert_laps_drives_three_consecutive_laps(
    quickstart: tuple[QuickstartResult, Path],
) -> None:
    result, root = quickstart
    assert result.result.status == "succeeded"
    report = json.loads((root / "store" / "models" / "pilot" / "demo" / "report.json").read_text())
    closed = ClosedLoopReport.model_validate(report["closed_loop"][0])
    laps = [round(lap.time_s, 2) for lap in closed.lap_times]
    print(
        f"\nquickstart: {result.recorded_frames} frames recorded in {result.record_s:.1f} s, trained, "
        f"exported and evaluated in {result.train_s:.1f} s; {closed.track}: {closed.laps_completed}/3 laps, "
        f"completion {closed.completion_pct}%, lap times {laps} s, expert {closed.expert_lap_time_s:.2f} s"
    )
    assert closed.laps_completed == 3 and closed.completion_pct == 100.0
    assert closed.off_track_count == 0 and closed.episode_status == "lap_complete"
    assert closed.lap_time_vs_expert is not None and closed.lap_time_vs_expert < 1.5
    assert result.result.metrics["completion_pct"] == 100.0
    for name in ("simtrace.csv", "map.png", "run.mp4"):
        assert (root / "store" / "models" / "pilot" / "demo" / "closed-loop" / name).exists(), name


@pytest.mark.slow
def test_an_evaluate_job_drives_the_stored_onnx_model(quickstart: tuple[QuickstartResult, Path]) -> None:
    _, root = quickstart
    settings = TrainerSettings(store=str(root / "store"), work_dir=str(root / "evals"))
    params = EvaluateParams(
        model_name="pilot", model_version="demo", track="oval", laps=1, options={"video": False}
    )
    result = run_evaluate_job(params, settings, job="eval-1")
    assert result.status == "succeeded" and result.kind == "evaluate"
    assert result.metrics["completion_pct"] == 100.0 and result.metrics["laps_completed"] == 1.0
    assert result.artifacts["report"] == "evals/eval-1/report.json"
    store = LocalStore(root / "store")
    assert store.exists("evals/eval-1/simtrace.csv") and store.exists("evals/eval-1/map.png")
