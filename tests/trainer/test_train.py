import json
import threading
import time
from pathlib import Path

import pytest

from infra.store import LocalStore
from schemas.messages import JobProgress
from tests.trainer.conftest import small_config
from trainer.augment import AugmentConfig
from trainer.train import TrainResult, fit, load_checkpoint, weights_digest


def test_training_learns_steering_and_writes_its_run(small_store: LocalStore, tmp_path: Path) -> None:
    config = small_config(small_store, tmp_path / "run", epochs=4)
    result = fit(config)
    assert result.epochs_run == 4 and result.world == 1 and result.launcher == "local"
    assert result.train_frames == 240 and result.val_frames == 120
    first, last = result.history[0], result.history[-1]
    assert last.train_loss < first.train_loss
    assert result.metrics["steering_r2"] > 0.5, result.metrics
    assert {"steering_mae", "throttle_mae", "steering_r2"} <= set(last.metrics)
    # the run's files
    run = tmp_path / "run"
    assert TrainResult.load(run / "result.json") == result
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]
    model, ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["epoch"] == result.best_epoch
    assert model.card().input == result.card.input
    assert result.card.training["val_sessions"] == [s.to_dict() for s in result.val_sessions]
    stats = result.card.input_stats  # the reference the hub measures drift against
    assert stats is not None and stats.frames == 240 and abs(sum(stats.colour_hist) - 3) < 1e-3
    # and the network's features on the same frames, for the best epoch's weights (those exported)
    assert result.card.features is not None and stats.features is not None
    assert stats.features.samples == 240 and len(stats.features.mean) == result.card.features.size


class _Crash(Exception):
    pass


class _CrashAfter:
    """A progress sink that fails the run at the end of one epoch, like a killed process."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def emit(self, progress: JobProgress) -> None:
        if progress.stage == "epoch" and progress.epoch == self.epoch:
            raise _Crash

    def close(self) -> None:
        pass


def test_resume_continues_exactly_where_the_run_stopped(small_store: LocalStore, tmp_path: Path) -> None:
    straight = fit(small_config(small_store, tmp_path / "a", epochs=3, job="a"))
    config = small_config(small_store, tmp_path / "b", epochs=3, job="b")
    with pytest.raises(_Crash):
        fit(config, sink=_CrashAfter(epoch=2))
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 2
    resumed = fit(config)
    assert resumed.weights_sha256 == straight.weights_sha256
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in straight.history]
    # Same seed, same run; another seed, another run.
    again = fit(small_config(small_store, tmp_path / "c", epochs=3))
    assert again.weights_sha256 == straight.weights_sha256
    other = fit(small_config(small_store, tmp_path / "d", epochs=1, seed=5))
    assert other.weights_sha256 != straight.weights_sha256


def test_early_stopping_stops_after_patience(small_store: LocalStore, tmp_path: Path) -> None:
    # No later epoch can beat the first by min_delta, so training stops after 1 + patience epochs.
    result = fit(small_config(small_store, tmp_path / "run", epochs=10, patience=2, min_delta=10.0))
    assert result.stopped_early
    assert result.epochs_run == 3 and result.best_epoch == 1


@pytest.mark.parametrize("architecture", ["categorical", "linear"])
def test_other_architectures_train(small_store: LocalStore, tmp_path: Path, architecture: str) -> None:
    result = fit(
        small_config(small_store, tmp_path / "run", architecture=architecture, epochs=2, weighting="sampler")
    )
    assert result.card.architecture == architecture
    if architecture == "categorical":
        assert 0 <= result.metrics["steering_accuracy"] <= 1
        assert result.card.outputs[0].kind == "categorical" and len(result.card.outputs[0].bins) == 15
    model, _ = load_checkpoint(result.checkpoint)
    assert model.architecture == architecture and weights_digest(model)  # the checkpoint rebuilds


def test_one_session_trains_without_validation(tmp_path: Path) -> None:
    from tests.trainer.synth import write_session

    store = LocalStore(tmp_path / "store")
    write_session(store, "car-1", "only", 60)
    result = fit(small_config(store, tmp_path / "run", epochs=1, augment=AugmentConfig.none()))
    assert result.val_frames == 0 and result.monitor == "train_eval_loss"
    assert result.history[0].val_loss is None


def test_no_data_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "empty")
    with pytest.raises(ValueError, match="no training sessions"):
        fit(small_config(store, tmp_path / "run"))


def test_progress_is_published_on_the_jobs_topic(
    small_store: LocalStore, tmp_path: Path, broker_url: str
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from schemas.mqtt_url import BrokerUrl

    url = BrokerUrl.parse(broker_url)
    got: list[JobProgress] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_connect = lambda c, *_: c.subscribe("paddock/v1/jobs/train/job-7/progress", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, msg: got.append(JobProgress.from_json(msg.payload))
    client.connect(url.host, url.port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        fit(small_config(small_store, tmp_path / "run", epochs=2, job="job-7", broker=broker_url))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(p.stage == "epoch" for p in got) < 2:
            time.sleep(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    epochs = [p for p in got if p.stage == "epoch"]
    assert [p.epoch for p in epochs] == [1, 2]
    assert all(p.job == "job-7" and p.state == "running" for p in got)
    assert epochs[-1].val_loss is not None and "steering_mae" in epochs[-1].metrics
    assert got[0].stage == "loading"


def test_loader_workers_do_not_change_the_result(small_store: LocalStore, tmp_path: Path) -> None:
    # The sampler (in this process) draws every augmentation, so workers only do the work.
    inline = fit(small_config(small_store, tmp_path / "a", epochs=2))
    workers = fit(small_config(small_store, tmp_path / "b", epochs=2, loader_workers=1))
    assert workers.weights_sha256 == inline.weights_sha256
