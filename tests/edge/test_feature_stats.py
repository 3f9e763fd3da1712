"""The car summarises its network's features into the input statistics of its telemetry: a model
exported by the trainer (with its ``features`` output) driving a simulated car; an older model
without the output keeps driving, with pixel statistics only."""

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from schemas.input_stats import FeatureStats, InputStats
from tests.edge.harness import Observer, RecordingDaemon, T, clear_retained, sim_car_config, until
from tests.edge.modelkit import onnx_model, signed_envelope
from tests.edge.test_car_metrics import num, scrape
from tests.trainer.featurekit import sim_pilot
from trainer.export import export_onnx


def _live_features(obs: Observer, car: str, model: str) -> list[InputStats]:
    return [
        InputStats.model_validate(t["input_stats"])
        for t in obs.json(T.telemetry(car))
        if t.get("model") == model and t.get("input_stats")
    ]


async def test_the_car_reports_its_networks_features(mosquitto: Any, tmp_path: Path) -> None:
    pilot = sim_pilot()
    model = pilot.model
    card = model.card().model_copy(update={"input_stats": pilot.train})
    with tempfile.TemporaryDirectory() as tmp:
        data = export_onnx(model, Path(tmp) / "model.onnx", card).read_bytes()
    car = "sim-features"
    cfg = sim_car_config(
        tmp_path, mosquitto.url, car=car, metrics={"enabled": True, "port": 0}, publish={"telemetry_hz": 20}
    )
    async with (
        Observer(mosquitto.url, [T.telemetry(car)]) as obs,
        RecordingDaemon(cfg) as daemon,
    ):
        await until(lambda: daemon.link.connected.is_set())
        assert await daemon.offer_model(
            signed_envelope(data, None, name="clone", version="1", model_card=card)
        )
        daemon.set_autopilot("model")
        stats = await until(
            lambda: [s for s in _live_features(obs, car, "clone:1") if s.features],
            30,
            "features in telemetry",
        )
        features = stats[0].features
        assert isinstance(features, FeatureStats) and len(features.mean) == len(features.std) == 16
        assert features.samples == stats[0].frames >= 5 and np.abs(features.mean).max() > 0
        assert daemon.feature_drift is not None and daemon.input_drift is not None
        print(f"on the car: pixel PSI {daemon.input_drift:.3f}, feature drift {daemon.feature_drift:.3f}")
        assert daemon.metrics is not None and daemon.metrics.port is not None
        samples = await scrape(daemon.metrics.port)
        assert num(samples, "paddock_car_feature_drift", car=car) >= 0
        assert num(samples, "paddock_car_input_drift_psi", car=car) >= 0

        # An older model, without a feature output: it drives, and the statistics have pixels only.
        old = onnx_model(steering=0.0, throttle=0.3)
        assert await daemon.offer_model(signed_envelope(old, None, name="old", version="1"))
        later = await until(lambda: _live_features(obs, car, "old:1")[1:], 30, "telemetry on the old model")
        assert all(s.features is None for s in later)
    await clear_retained(mosquitto.url, [T.car_status(car), T.model_state(car)])
