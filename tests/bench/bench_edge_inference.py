"""Inference latency on the car: ONNX Runtime vs torch eager, same weights, batch 1, side by side.

Two networks, each exported to ONNX from the very module torch runs: a DonkeyCar-style "linear"
pilot (5 convolutions, 2 dense layers, steering and throttle heads) on a 160×120 RGB image, and a
small pilot (3 convolutions on an 80×60 crop) of the kind that runs at 50-100 Hz on a Pi. Both
runtimes run interleaved in one process, with the same thread counts. Goal: ONNX Runtime ≥ 2×
faster.

    python -m pytest tests/bench/bench_edge_inference.py -s -p no:cacheprovider -o python_files='bench_*.py'
    python -m tests.bench.bench_edge_inference
"""

import io
import itertools
import statistics
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

RUNS = 300


ARCHITECTURES = {
    # name: (input h, w, conv channels, (kernel, stride) per conv, dense widths)
    "linear": ((120, 160), [3, 24, 32, 64, 64, 64], [(5, 2), (5, 2), (5, 2), (3, 1), (3, 1)], [100, 50]),
    "small": ((60, 80), [3, 8, 16, 32], [(5, 2), (3, 2), (3, 2)], [32]),
}


class Pilot(nn.Module):
    def __init__(self, arch: str = "linear") -> None:
        super().__init__()
        (h, w), c, convs, dense = ARCHITECTURES[arch]
        self.input_hw = (h, w)
        layers: list[nn.Module] = []
        for i, (k, s) in enumerate(convs):
            layers += [nn.Conv2d(c[i], c[i + 1], k, s), nn.ReLU(), nn.Dropout(0.1)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            n = self.features(torch.zeros(1, 3, h, w)).shape[1]
        widths = [n, *dense]
        mlp: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            mlp += [nn.Linear(a, b), nn.ReLU()]
        self.dense = nn.Sequential(*mlp)
        self.steering = nn.Linear(widths[-1], 1)
        self.throttle = nn.Linear(widths[-1], 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.dense(self.features(image))
        return self.steering(h), self.throttle(h)


def export(model: Pilot) -> bytes:
    buf = io.BytesIO()
    warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export")
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, *model.input_hw),),
        buf,
        input_names=["image"],
        output_names=["steering", "throttle"],
        dynamo=False,
    )
    return buf.getvalue()


def measure(arch: str, threads: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = Pilot(arch).eval()
    data = export(model)
    torch.set_num_threads(threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, *model.input_hw), dtype=np.float32)
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        want = [t.numpy() for t in model(xt)]
    got = session.run(None, {"image": x})
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(want, got, strict=True)), "outputs differ"
    t_torch, t_ort = [], []
    with torch.inference_mode():
        for _ in range(20):  # warm-up
            model(xt)
            session.run(None, {"image": x})
        for _ in range(RUNS):  # interleaved, so both see the same machine state
            t0 = time.perf_counter()
            model(xt)
            t1 = time.perf_counter()
            session.run(None, {"image": x})
            t2 = time.perf_counter()
            t_torch.append((t1 - t0) * 1000)
            t_ort.append((t2 - t1) * 1000)
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
        f"inference, batch 1, {RUNS} runs each, interleaved (torch {torch.__version__}, "
        f"onnxruntime {ort.__version__})"
    )
    for arch in ARCHITECTURES:
        for threads in (1, 2):
            r = measure(arch, threads)
            ratio = r["torch_p50"] / r["ort_p50"]
            print(
                f"{arch:6s} threads={threads}: "
                f"torch eager p50 {r['torch_p50']:.3f} ms (p99 {r['torch_p99']:.3f}) | "
                f"onnxruntime p50 {r['ort_p50']:.3f} ms (p99 {r['ort_p99']:.3f}) | ratio {ratio:.2f}x "
                f"(goal >= 2x) [{int(r['params'])} params, {r['onnx_bytes'] / 1e6:.2f} MB]"
            )
            results.append({"threads": threads, "ratio": ratio, **r})
    return results


def test_bench_onnxruntime_vs_torch() -> None:
    for r in run():
        assert r["ort_p50"] > 0 and r["torch_p50"] > 0


if __name__ == "__main__":
    run()
