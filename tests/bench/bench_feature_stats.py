"""What the drift monitor's feature summary and the car's /metrics cost, side by side.

* per tick, the model: the trainer's networks exported with their ``features`` output (what
  ``trainer.export`` writes now) against the same weights exported with the steering and throttle
  outputs only (what it wrote before), both run through the car's ONNX runtime plugin, interleaved;
* per tick, the pilot: ``ModelPilot.act`` (preprocessing, inference, decoding) with and without the
  card's ``features`` (the pilot keeps a reference to the output);
* per tick, /metrics: ``CarMetrics.observe_tick`` (three histogram observations);
* per telemetry sample (5 Hz by default, off the loop): ``FeatureStatsAccumulator.add``;
* per summary, on the hub: ``feature_drift`` beside ``input_drift``.

    python -m pytest tests/bench/bench_feature_stats.py -s -p no:cacheprovider -o python_files='bench_*.py'
    python -m tests.bench.bench_feature_stats
"""

import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edge.config import MetricsSection
from edge.metrics import CarMetrics, CarReadings
from edge.pilots import ModelPilot
from edge.runtimes import LoadedModel
from edge.runtimes.onnx import OnnxRuntime
from firmware.camera import Frame
from schemas.input_stats import FeatureStatsAccumulator, InputStatsAccumulator, feature_drift, input_drift
from schemas.model_card import ModelCard, ModelManifest, sha256_hex
from trainer.export import export_onnx
from trainer.models import PilotModel, build_model

RUNS = 400


def _heads_only(model: PilotModel, path: Path) -> bytes:
    """The same weights exported the way the trainer did before the features output."""
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(2, *model.spec.shape),),
            str(path),
            input_names=["image"],
            output_names=model.output_names,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            opset_version=18,
            external_data=False,
        )
    return path.read_bytes()


def _interleaved(a: Callable[[], object], b: Callable[[], object]) -> tuple[float, float]:
    """Median µs of ``a`` and of ``b``, called in turn."""
    ta, tb = [], []
    for _ in range(20):
        a(), b()
    for _ in range(RUNS):
        t0 = time.perf_counter()
        a()
        t1 = time.perf_counter()
        b()
        t2 = time.perf_counter()
        ta.append((t1 - t0) * 1e6)
        tb.append((t2 - t1) * 1e6)
    return statistics.median(ta), statistics.median(tb)


def _per_call(fn: Callable[[], object], n: int = 20000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def model_costs(arch: str) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(arch).eval()
    card = model.card()
    with tempfile.TemporaryDirectory() as tmp:
        with_features = export_onnx(model, Path(tmp) / "f.onnx").read_bytes()
        heads = _heads_only(model, Path(tmp) / "h.onnx")
    old_card = card.model_copy(update={"features": None})
    new, old = OnnxRuntime().load(with_features, card), OnnxRuntime().load(heads, old_card)
    sample = np.random.default_rng(0).uniform(-1, 1, model.spec.shape).astype(np.float32)
    assert "features" in new.run(sample) and "features" not in old.run(sample)
    run_new, run_old = _interleaved(lambda: new.run(sample), lambda: old.run(sample))

    def pilot(data: bytes, c: ModelCard, loaded: LoadedModel) -> ModelPilot:
        digest = sha256_hex(data)
        manifest = ModelManifest(name="p", version="1", sha256=digest, size=len(data), format="onnx", card=c)
        return ModelPilot(manifest, loaded)

    image = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    frames = [Frame(image=image, index=i, t_capture_ns=0) for i in range(2 * RUNS + 40)]
    p_new, p_old = pilot(with_features, card, new), pilot(heads, old_card, old)
    it_new, it_old = iter(frames), iter(frames)
    act_new, act_old = _interleaved(lambda: p_new.act(next(it_new)), lambda: p_old.act(next(it_old)))
    assert p_new.act(frames[-1]).features is not None and p_old.act(frames[-1]).features is None
    return {"run_new": run_new, "run_old": run_old, "act_new": act_new, "act_old": act_old}


def small_costs() -> dict[str, float]:
    readings = CarReadings(0, 0, 0, 0, None, None, None, None, None, 0, 0, False, "stop")
    metrics = CarMetrics("bench", MetricsSection(enabled=True), lambda: readings)
    observe = _per_call(lambda: metrics.observe_tick(0.0012, 0.4, 0.8))
    rng = np.random.default_rng(0)
    acc = FeatureStatsAccumulator()
    vector = rng.normal(0, 1, 16).astype(np.float32)
    add = _per_call(lambda: acc.add(vector))
    ref, live = FeatureStatsAccumulator(), FeatureStatsAccumulator()
    pixels = InputStatsAccumulator()
    for _ in range(50):
        ref.add(rng.normal(0, 1, 16))
        live.add(rng.normal(0.2, 1, 16))
        pixels.add(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    r, lv, px = ref.stats(), live.stats(), pixels.stats()
    assert r is not None and lv is not None and px is not None
    drift = _per_call(lambda: feature_drift(r, lv), 5000)
    psi = _per_call(lambda: input_drift(px, px), 5000)
    return {"observe": observe, "add": add, "feature_drift": drift, "input_drift": psi}


def run() -> None:
    print(f"\nper tick, median of {RUNS} interleaved calls, 1 thread (µs); the car's ONNX runtime plugin")
    head = ("network 160×80", "run: features", "heads only", "act: features", "without")
    print(f"{head[0]:16s} {head[1]:>14s} {head[2]:>11s} {head[3]:>14s} {head[4]:>8s}")
    for arch in ("mobilenet", "linear"):
        c = model_costs(arch)
        print(
            f"{arch:16s} {c['run_new']:14.1f} {c['run_old']:11.1f} {c['act_new']:14.1f} {c['act_old']:8.1f}"
        )
    s = small_costs()
    print(f"CarMetrics.observe_tick (per tick): {s['observe']:.2f} µs")
    print(f"FeatureStatsAccumulator.add (per telemetry sample, 16 values): {s['add']:.2f} µs")
    print(f"hub, per summary: feature_drift {s['feature_drift']:.1f} µs, ", end="")
    print(f"input_drift (pixel PSI) {s['input_drift']:.1f} µs")


def test_bench_feature_stats() -> None:
    torch.set_num_threads(1)
    run()


if __name__ == "__main__":
    torch.set_num_threads(1)
    run()
