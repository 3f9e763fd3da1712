"""Drift on the network's features: the hub compares a car's live feature summary with the card's
training features beside the pixel PSI, and raises drift when the network sees something new that
the pixels' histograms do not show (the oval driven the other way round)."""

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hub.config import MlopsConfig
from hub.mlops.monitor import FleetMonitor
from hub.telemetry.metrics import FleetCollector
from schemas.input_stats import InputStats, feature_drift, input_drift
from schemas.messages import DriftEvent, Telemetry
from tests.trainer.featurekit import drive_stats, sim_pilot


@pytest.fixture(scope="module")
def oval() -> dict[str, InputStats]:
    """The card's training statistics and three telemetry summaries of 24 frames from another drive:
    the same world, the oval driven the other way round, the lights dimmed and new colours."""
    pilot = sim_pilot()
    model = pilot.model
    return {
        "train": pilot.train,
        "same": drive_stats(model, 1, 24),
        "same again": drive_stats(model, 2, 24),
        "reversed": drive_stats(model, 1, 24, reverse=True),
        "dim": drive_stats(model, 1, 24, dim=True),
    }


def test_the_features_see_the_track_driven_the_other_way_round(oval: dict[str, InputStats]) -> None:
    config = MlopsConfig()
    train = oval["train"]
    assert train.features is not None and len(train.features.mean) == 16
    scores = {}
    for name in ("same", "same again", "reversed", "dim"):
        live = oval[name]
        assert live.features is not None
        scores[name] = (input_drift(train, live), feature_drift(train.features, live.features))
        print(f"{name:10s} pixel PSI {scores[name][0]:.3f}  feature drift {scores[name][1]:.3f}")
    for name in ("same", "same again"):
        assert scores[name][0] < config.drift_threshold and scores[name][1] < config.feature_drift_threshold
    # the other way round: the same pixels, and the network notices
    (rev_psi, rev_f), (dim_psi, dim_f) = scores["reversed"], scores["dim"]
    assert rev_psi < config.drift_threshold < dim_psi
    assert rev_f > config.feature_drift_threshold and dim_f > config.feature_drift_threshold


def _report(monitor: FleetMonitor, seq: int, stats: InputStats) -> None:
    monitor.on_telemetry(
        "car-1", Telemetry(seq=seq, ts=100.0 + seq, mode="autopilot", model="pilot:1", input_stats=stats)
    )


def test_the_monitor_raises_drift_on_features_alone(oval: dict[str, InputStats]) -> None:
    events: list[DriftEvent] = []
    monitor = FleetMonitor(
        MlopsConfig(drift_reports=2), lambda ref: oval["train"], lambda c, e: events.append(e)
    )
    for seq, name in enumerate(["same", "reversed", "reversed"]):
        _report(monitor, seq, oval[name])
    [event] = events
    assert event.drifted and event.score < event.threshold  # the pixels did not move
    assert event.feature_score is not None and event.feature_threshold == 0.25
    assert event.feature_score > event.feature_threshold and "feature drift" in event.why()
    row = monitor.rows()[0]
    assert row.drifted and row.feature_drift_score == pytest.approx(event.feature_score, abs=1e-4)
    registry = CollectorRegistry()
    registry.register(FleetCollector(monitor.rows, 0.25))
    text = generate_latest(registry).decode()
    assert 'paddock_fleet_feature_drift_score{car="car-1",model="pilot:1"}' in text
    for seq in (3, 4):
        _report(monitor, seq, oval["same"])
    assert [e.drifted for e in events] == [True, False]


def test_a_card_without_features_is_compared_on_pixels_only(oval: dict[str, InputStats]) -> None:
    """An older model's card (no features) and an older car (none in its telemetry): pixels only."""
    events: list[DriftEvent] = []
    pixels_only = oval["train"].model_copy(update={"features": None})
    monitor = FleetMonitor(
        MlopsConfig(drift_reports=2), lambda ref: pixels_only, lambda c, e: events.append(e)
    )
    for seq in range(3):
        _report(monitor, seq, oval["reversed"])
    assert events == [] and monitor.rows()[0].feature_drift_score is None
    monitor = FleetMonitor(
        MlopsConfig(drift_reports=2), lambda ref: oval["train"], lambda c, e: events.append(e)
    )
    for seq in range(3):
        _report(monitor, seq, oval["reversed"].model_copy(update={"features": None}))
    assert events == []
