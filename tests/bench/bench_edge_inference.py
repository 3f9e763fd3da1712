"""Inference latency on the car: ONNX Runtime vs torch eager, same weights, batch 1, side by side.

The networks are the trainer's own (`trainer.models`): the DonkeyCar-style linear CNN, its
categorical variant and the MobileNet-style net that train jobs default to, at the default input
(160×80 after the crop) and at the demo's (80×40). Each is exported with the trainer's exporter and
loaded through the car's ONNX runtime plugin (`edge.runtimes.onnx`), so the ONNX figure is what a
tick pays for the model; torch runs the very module that was exported. Calls alternate between the
two runtimes so both see the same machine state; 1 and 2 threads each. Goal: ONNX Runtime ≥ 2×
faster than torch eager.

    python -m pytest tests/bench/bench_edge_inference.py -s -p no:cacheprovider -o python_files='bench_*.py'
    python -m tests.bench.bench_edge_inference
"""

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from edge.runtimes.onnx import OnnxRuntime
from trainer.export import export_onnx
from trainer.models import ARCHITECTURES, ModelOptions, build_model

RUNS = 300
INPUTS = {"160×80": ModelOptions(), "80×40": ModelOptions(width=80, height=40)}


def measure(arch: str, options: ModelOptions, threads: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(arch, options).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx")
        data = path.read_bytes()
    loaded = OnnxRuntime().load(data, model.card(), threads=threads)
    torch.set_num_threads(threads)
    sample = np.random.default_rng(0).uniform(-1, 1, model.spec.shape).astype(np.float32)
    batch = torch.from_numpy(sample[None, ...])
    with torch.inference_mode():
        want = [t.numpy()[0] for t in model(batch)]
    got = loaded.run(sample)
    for name, expected in zip(model.output_names, want, strict=True):
        assert np.allclose(got[name], expected, atol=1e-4), f"{arch}: {name} differs between runtimes"
    t_torch, t_ort = [], []
    with torch.inference_mode():
        for _ in range(20):  # warm-up
            model(batch)
            loaded.run(sample)
        for _ in range(RUNS):  # interleaved, so both see the same machine state
            t0 = time.perf_counter()
            model(batch)
            t1 = time.perf_counter()
            loaded.run(sample)
            t2 = time.perf_counter()
            t_torch.append((t1 - t0) * 1000)
            t_ort.append((t2 - t1) * 1000)
    loaded.close()
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "onnx_bytes": len(data),
        "torch_p50": statistics.median(t_torch),
        "ort_p50": statistics.median(t_ort),
        "torch_p99": float(np.percentile(t_torch, 99)),
        "ort_p99": float(np.percentile(t_ort, 99)),
    }


def run() -> list[dict[str, float]]:
    results = []
    print()
    print(
        f"inference, batch 1, {RUNS} calls each, interleaved (torch {torch.__version__}, "
        f"onnxruntime {ort.__version__}); ONNX through the car's runtime plugin"
    )
    for label, options in INPUTS.items():
        for arch in ARCHITECTURES:
            for threads in (1, 2):
                r = measure(arch, options, threads)
                ratio = r["torch_p50"] / r["ort_p50"]
                print(
                    f"{arch:11s} {label:6s} threads={threads}: "
                    f"torch eager p50 {r['torch_p50']:.3f} ms (p99 {r['torch_p99']:.3f}) | "
                    f"onnxruntime p50 {r['ort_p50']:.3f} ms (p99 {r['ort_p99']:.3f}) | "
                    f"ratio {ratio:.2f}x (goal >= 2x) "
                    f"[{int(r['params'])} params, {r['onnx_bytes'] / 1e6:.2f} MB]"
                )
                results.append({"threads": threads, "ratio": ratio, **r})
    return results


def test_bench_onnxruntime_vs_torch() -> None:
    for r in run():
        assert r["ort_p50"] > 0 and r["torch_p50"] > 0


if __name__ == "__main__":
    run()
