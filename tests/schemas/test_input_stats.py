import numpy as np
import pytest

from schemas.input_stats import BINS, InputStats, InputStatsAccumulator
from schemas.messages import Telemetry
from schemas.model_card import InputSpec, ModelCard, OutputSpec, output_confidence


def _image(level: int) -> np.ndarray:
    rng = np.random.default_rng(level)
    return np.clip(rng.normal(level, 20, (120, 160, 3)), 0, 255).astype(np.uint8)


def test_histograms_are_fractions_and_follow_brightness() -> None:
    dark, bright = InputStatsAccumulator(), InputStatsAccumulator()
    for _ in range(3):
        dark.add(_image(60))
        bright.add(_image(200))
    d, b = dark.stats(), bright.stats()
    assert d is not None and b is not None and d.frames == 3
    assert sum(d.brightness_hist) == pytest.approx(1, abs=1e-3)
    assert sum(d.colour_hist) == pytest.approx(3, abs=1e-3)
    assert d.brightness_mean == pytest.approx(60 / 255, abs=0.02)
    assert np.argmax(d.brightness_hist) < np.argmax(b.brightness_hist)


def test_gray_images_and_an_empty_accumulator() -> None:
    acc = InputStatsAccumulator()
    assert acc.stats() is None
    acc.add(np.full((40, 40), 255, dtype=np.uint8))
    s = acc.stats()
    assert s is not None and s.brightness_hist[BINS - 1] == pytest.approx(1)


def test_old_telemetry_still_parses_and_new_fields_round_trip() -> None:
    old = Telemetry.from_dict({"seq": 0, "ts": 1.0, "mode": "stop"})
    assert old.input_stats is None and old.interventions is None
    acc = InputStatsAccumulator()
    acc.add(_image(100))
    new = old.model_copy(update={"input_stats": acc.stats(), "interventions": 2, "lap_time_s": 9.5})
    assert Telemetry.from_json(new.to_json()) == new
    with pytest.raises(ValueError):
        InputStats(frames=1, brightness_mean=0.5, brightness_hist=[1.0], colour_hist=[])


def test_confidence_of_categorical_outputs_only() -> None:
    spec = InputSpec(width=8, height=8)
    linear = ModelCard(architecture="x", input=spec, outputs=[OutputSpec(name="steering")])
    cat = ModelCard(
        architecture="x",
        input=spec,
        outputs=[OutputSpec(name="steering", kind="categorical", bins=[-1, 0, 1])],
    )
    values = {"steering": np.asarray([0.0, 0.0, np.log(8.0)], dtype=np.float32)}
    assert output_confidence(linear, {"steering": np.zeros(1, dtype=np.float32)}) is None
    assert output_confidence(cat, values) == pytest.approx(0.8)


def test_feature_summaries_and_their_drift() -> None:
    from schemas.input_stats import FeatureStats, FeatureStatsAccumulator, feature_drift

    rng = np.random.default_rng(0)
    ref, same, moved = FeatureStatsAccumulator(), FeatureStatsAccumulator(), FeatureStatsAccumulator()
    for _ in range(400):
        ref.add(rng.normal(0.0, 1.0, 16))
    for _ in range(24):
        same.add(rng.normal(0.0, 1.0, 16))
        moved.add(rng.normal(0.5, 1.0, 16))  # half a standard deviation
    moved.add(np.zeros(8))  # another model's vector: ignored
    moved.add(np.full(16, np.nan))  # not finite: ignored
    r, s, m = ref.stats(), same.stats(), moved.stats()
    assert r is not None and s is not None and m is not None and m.samples == 24
    assert r.mean == pytest.approx([0.0] * 16, abs=0.2) and r.std == pytest.approx([1.0] * 16, abs=0.15)
    assert feature_drift(r, r) == 0.0
    assert feature_drift(r, s) < 0.15  # sampling alone is taken off
    assert feature_drift(r, m) == pytest.approx(0.5, abs=0.15)
    constant = FeatureStats(samples=10, mean=[1.0] * 16, std=[0.0] * 16)
    assert feature_drift(constant, constant) == 0.0
    with pytest.raises(ValueError):
        feature_drift(r, FeatureStats(samples=1, mean=[0.0], std=[0.0]))
    with pytest.raises(ValueError):
        FeatureStats(samples=1, mean=[0.0, 1.0], std=[0.0])
    assert FeatureStatsAccumulator().stats() is None


def test_a_card_declares_the_features_its_statistics_hold() -> None:
    from schemas.input_stats import FeatureStats
    from schemas.model_card import FeaturesSpec

    acc = InputStatsAccumulator()
    acc.add(_image(100))
    stats = acc.stats()
    assert stats is not None
    features = stats.model_copy(update={"features": FeatureStats(samples=1, mean=[0.0] * 4, std=[0.0] * 4)})
    base = {
        "architecture": "x",
        "input": InputSpec(width=8, height=8),
        "outputs": [OutputSpec(name="steering")],
    }
    card = ModelCard(**base, features=FeaturesSpec(size=4), input_stats=features)
    assert ModelCard.from_json(card.to_json()) == card
    with pytest.raises(ValueError, match="features"):
        ModelCard(**base, input_stats=features)  # statistics of features the model does not give
    with pytest.raises(ValueError, match="features"):
        ModelCard(**base, features=FeaturesSpec(size=8), input_stats=features)
    with pytest.raises(ValueError, match="also an output"):
        ModelCard(**base, features=FeaturesSpec(tensor="steering", size=4))
    assert "features" not in ModelCard(**base).to_dict()  # an older card's bytes stay as they were
