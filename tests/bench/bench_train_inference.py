"""Inference latency of each exported format on one CPU thread, batch 1 — what a car pays per tick.

    python tests/bench/bench_train_inference.py
    python -m pytest tests/bench/bench_train_inference.py -s -p no:cacheprovider -o python_files='bench_*.py'

For every architecture at the default input (160×80) and the demo's (80×40): torch (eager), ONNX
Runtime float, ONNX Runtime int8 (static QDQ) and TFLite (ai-edge-litert, XNNPACK). The model
only (the card's preprocessing costs the same for every format). Formats alternate within each
round so that load from elsewhere on the machine hits all alike; the median over rounds of each
round's median is reported, with the 90th percentile of all calls.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trainer.export import (  # noqa: E402
    export_onnx,
    export_tflite,
    onnx_session,
    quantize_int8,
    tflite_runner,
)
from trainer.models import ARCHITECTURES, ModelOptions, build_model  # noqa: E402

ROUNDS = 5
CALLS = 60


def _latencies(fn: Callable[[], object], calls: int = CALLS) -> list[float]:
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _runners(
    model: torch.nn.Module, x: np.ndarray, float_sess: Any, int8_sess: Any
) -> dict[str, Callable[[], object]]:
    name = float_sess.get_inputs()[0].name
    xt = torch.from_numpy(x)

    def run_torch() -> object:
        with torch.no_grad():
            return model(xt)

    return {
        "torch": run_torch,
        "onnx": partial(float_sess.run, None, {name: x}),
        "onnx int8": partial(int8_sess.run, None, {name: x}),
    }


def run() -> list[str]:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    have_tflite = importlib.util.find_spec("litert_torch") is not None
    lines = [
        "inference latency, batch 1, 1 thread, ms (median · p90):",
        f"  {'model':26s} {'torch':>14s} {'onnx':>14s} {'onnx int8':>14s} {'tflite':>14s}",
    ]
    rng = np.random.default_rng(0)
    for label, options in (("160×80", ModelOptions()), ("80×40", ModelOptions(width=80, height=40))):
        for arch in ARCHITECTURES:
            torch.manual_seed(0)
            model = build_model(arch, options).eval()
            x = rng.standard_normal((1, *model.spec.shape)).astype(np.float32)
            calib = rng.standard_normal((64, *model.spec.shape)).astype(np.float32).clip(-1, 1)
            with tempfile.TemporaryDirectory() as tmp:
                onnx_path = export_onnx(model, Path(tmp) / "m.onnx")
                int8_path = quantize_int8(onnx_path, Path(tmp) / "m.int8.onnx", calib)
                float_sess, int8_sess = onnx_session(onnx_path), onnx_session(int8_path)
                runners = _runners(model, x, float_sess, int8_sess)
                if have_tflite:
                    tfl = tflite_runner(export_tflite(model, Path(tmp) / "m.tflite"), threads=1)
                    runners["tflite"] = partial(tfl, image=x)
                for fn in runners.values():
                    _latencies(fn, 10)  # warm up
                rounds: dict[str, list[float]] = {k: [] for k in runners}
                every: dict[str, list[float]] = {k: [] for k in runners}
                for _ in range(ROUNDS):
                    for key, fn in runners.items():
                        lat = _latencies(fn)
                        rounds[key].append(statistics.median(lat))
                        every[key] += lat
            cells = []
            for key in ("torch", "onnx", "onnx int8", "tflite"):
                if key in rounds:
                    p90 = float(np.percentile(every[key], 90))
                    cells.append(f"{statistics.median(rounds[key]):6.3f} · {p90:5.2f}")
                else:
                    cells.append(f"{'(no litert)':>14s}")
            lines.append(f"  {arch + ' ' + label:26s} " + " ".join(f"{c:>14s}" for c in cells))
    return lines


def test_inference_latency() -> None:
    for line in run():
        print(line)


if __name__ == "__main__":
    test_inference_latency()
