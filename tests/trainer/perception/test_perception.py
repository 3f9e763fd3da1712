"""Perception: dataset, validation, training, search, metrics, export and the command line."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infra.store import open_store
from schemas.dataset import shard_key
from schemas.messages import SessionRef
from schemas.shards import Sample, write_shard
from trainer.perception import OBSTACLE_CLASSES, SURFACE_CLASSES
from trainer.perception.dataset import load_table, split_by_session
from trainer.perception.metrics import task_metrics, worst_mistakes, write_report
from trainer.perception.search import search
from trainer.perception.train import TrainConfig, load_checkpoint, predict, train
from trainer.perception.validate import DatasetRefused, Thresholds, data_report, ensure_valid

LOOSE = Thresholds(min_per_class=0, max_imbalance=1e9)


def test_load_and_split_by_session(captured: Path) -> None:
    table = load_table(open_store(str(captured)))
    assert len(table) == 160 and table.images.shape[1:] == (60, 80, 3)
    assert set(table.labels["obstacle"]) <= set(range(-1, len(OBSTACLE_CLASSES)))
    assert (table.labels["obstacle"] > 0).sum() > 20  # the shots see obstacles ahead
    # An ambiguous obstacle label (an obstacle just outside the corridor ahead) is left out (-1);
    # the frame keeps its surface label.
    ambiguous = np.array([r["labels"]["ahead_ambiguous"] for r in table.records])
    assert ambiguous.any() and table.skipped["obstacle_ambiguous"] == ambiguous.sum()
    assert ((table.labels["obstacle"] == -1) == ambiguous).all() and (table.labels["surface"] >= 0).all()
    splits = split_by_session(table, 0.25, 0.25)
    names = [set(s.session_names()) for s in splits.values()]
    assert all(names) and not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert sum(len(s) for s in splits.values()) == len(table)
    with pytest.raises(ValueError, match="3 sessions"):
        split_by_session(table.subset(np.isin(table.sessions, table.session_names()[:2])))


def test_validation_passes_good_data_and_refuses_bad(captured: Path, tmp_path: Path) -> None:
    store = open_store(str(captured))
    good = data_report(store, load_table(store), LOOSE)
    assert good.ok, good.reasons
    assert sum(good.per_class["surface"].values()) == 160 and good.duplicates == 0
    assert all(v["rows"] == v["frames"] == 40 for v in good.lidar.values())
    # A copy with a session without labels, a duplicated frame, a dark frame, and a lidar file gone.
    bad_root = tmp_path / "bad"
    shutil.copytree(captured, bad_root)
    bad = open_store(str(bad_root))
    table = load_table(bad)
    frames = [Sample(seq=i, jpeg=_dark_jpeg(), record={"steering": 0.0, "throttle": 0.0}) for i in range(5)]
    buf = io.BytesIO()
    write_shard(buf, frames)
    bad.put(shard_key("sim-capture", "unlabelled", 0), buf.getvalue())
    first = table.session_names()[0]
    (bad_root / "datasets" / first / "lidar.csv").unlink()
    report = data_report(bad, load_table(bad), LOOSE.model_copy(update={"max_unlabelled": 0.0}))
    assert not report.ok
    reasons = " ".join(report.reasons)
    assert "labels: 5 frames without labels" in reasons
    assert f"lidar: {first}: no lidar.csv" in reasons
    with pytest.raises(DatasetRefused, match="labels"):
        ensure_valid(report)
    dup = load_table(open_store(str(captured)))
    dup.images[1] = dup.images[0]
    assert data_report(store, dup, LOOSE).duplicates == 1
    dark = load_table(open_store(str(captured)))
    dark.raw_stats["brightness"][:20] = 3.0
    assert any("exposure" in r for r in data_report(store, dark, LOOSE).reasons)


def _dark_jpeg() -> bytes:
    import cv2

    _, buf = cv2.imencode(".jpg", np.zeros((120, 160, 3), np.uint8))
    return bytes(buf.tobytes())


def test_train_checkpoints_early_stopping_and_report(captured: Path, tmp_path: Path) -> None:
    splits = split_by_session(load_table(open_store(str(captured))), 0.25, 0.25)
    seen: list[int] = []
    config = TrainConfig(epochs=6, patience=1, lr=1e-9, batch_size=32)  # learns nothing: stops early
    result = train(splits, config, tmp_path, on_epoch=lambda e, m: seen.append(e))
    assert result.stopped_early and len(seen) < 6 and result.best_epoch == seen[-1] - 1
    assert (tmp_path / "checkpoints" / "best.pt").exists() and (tmp_path / "checkpoints" / "last.pt").exists()
    model = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    probs = predict(model, splits["test"].images)
    assert probs["obstacle"].shape == (len(splits["test"]), len(OBSTACLE_CLASSES))
    np.testing.assert_allclose(probs["surface"].sum(axis=1), 1.0, rtol=1e-5)
    learned = train(splits, TrainConfig(epochs=2, patience=2, batch_size=32))
    assert learned.history[-1]["train_loss"] < learned.history[0]["train_loss"]
    report = write_report(splits["test"], predict(learned.model, splits["test"].images), tmp_path / "report")
    for task in ("obstacle", "surface"):
        for suffix in ("confusion", "roc", "pr", "mistakes"):
            assert (tmp_path / "report" / f"{task}_{suffix}.png").stat().st_size > 1000
        assert 0 <= report["tasks"][task]["accuracy"] <= 1
    assert "macro F1" in (tmp_path / "report" / "report.md").read_text()


def test_task_metrics_and_worst_mistakes() -> None:
    y = np.array([0, 0, 1, 1, 2])
    probs = np.array(
        [[0.9, 0.1, 0], [0.2, 0.8, 0], [0.1, 0.9, 0], [0.3, 0.7, 0], [0.6, 0.0, 0.4]], np.float32
    )
    m = task_metrics(y, probs, ("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["b"]["recall"] == 1.0
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert worst_mistakes(y, probs) == [1, 4]  # the 0.8-confident mistake first
    assert m["roc_auc"]["a"] == pytest.approx(4 / 6)  # 4 of the 6 positive-negative pairs ordered right


def test_search_is_bounded_and_prunes(captured: Path) -> None:
    splits = split_by_session(load_table(open_store(str(captured))), 0.25, 0.25)
    seen: list[dict] = []
    tuned, study = search(
        splits,
        TrainConfig(epochs=7, batch_size=32),
        trials=3,
        epochs_per_trial=2,
        on_trial=lambda n, t: seen.append(t),
    )
    assert len(study.trials) == 3 and len(seen) == 3
    assert tuned.epochs == 7 and tuned.lr == study.best_params["lr"]
    assert {t["state"] for t in seen} <= {"COMPLETE", "PRUNED"}


def test_perceive_command_refuses_bad_data_and_trains(captured: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "deploy.cli", "perceive"]
    refused = subprocess.run([*cmd, "validate", "--store", str(captured)], capture_output=True, text=True)
    assert refused.returncode == 1 and "too few frames" in refused.stderr  # 40-frame sessions are thin
    bad = subprocess.run(
        [
            *cmd,
            "train",
            "--store",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "r"),
            "--set",
            "lr=oops",
            "--no-track",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "lr" in bad.stderr and "Traceback" not in bad.stderr
    assert SessionRef  # the layout the hub writes is what is read
    assert SURFACE_CLASSES[-1] == "offtrack"
    json.dumps({})


def test_a_run_reads_frames_at_the_networks_input_size(captured: Path, tmp_path: Path) -> None:
    from trainer.perception.models import NetOptions
    from trainer.perception.pipeline import RunConfig, run

    net = NetOptions(height=48, width=64)
    config = RunConfig(
        data=str(captured),
        out=tmp_path / "run",
        train=TrainConfig(epochs=1, batch_size=32, net=net),
        thresholds=LOOSE,
        val_fraction=0.25,
        test_fraction=0.25,
    )
    summary = run(config)
    card = json.loads((tmp_path / "run" / "model" / "detector.card.json").read_text())
    assert (card["input"]["height"], card["input"]["width"]) == (48, 64)
    # the exported detector takes the frames the network was trained and tested on
    assert summary["export"]["onnx"]["test_accuracy"]["surface"] == pytest.approx(
        summary["test"]["surface"]["accuracy"], abs=0.02
    )


def test_the_moving_average_is_what_is_scored_and_kept(captured: Path) -> None:
    import torch

    from trainer.perception.train import _ema

    step = _ema(0.998)
    zero, one = torch.zeros(3), torch.ones(3)
    assert torch.allclose(step(zero, one, 0), torch.full((3,), 0.9))  # warm-up: (1 + 0) / (10 + 0) kept
    assert torch.allclose(step(zero, one, 10**6), torch.full((3,), 0.002))  # capped at the decay
    splits = split_by_session(load_table(open_store(str(captured))), 0.25, 0.25)
    raw = train(splits, TrainConfig(epochs=2, patience=2, batch_size=32, ema=0))
    averaged = train(splits, TrainConfig(epochs=2, patience=2, batch_size=32))
    # the same steps (same seed), so the same raw weights: the averaged model is another one
    assert raw.history[-1]["train_loss"] == pytest.approx(averaged.history[-1]["train_loss"], rel=1e-4)
    a, b = raw.model.state_dict(), averaged.model.state_dict()
    assert a.keys() == b.keys() and not all(torch.equal(a[k], b[k]) for k in a)
    probs = predict(averaged.model, splits["val"].images)["surface"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
