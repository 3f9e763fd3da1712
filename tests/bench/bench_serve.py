"""``paddock serve`` under concurrent load: requests per second and latency percentiles of a real
uvicorn on loopback, beside ONNX Runtime called directly in this process, in the same run.

    python tests/bench/bench_serve.py [--clients 16] [--requests 800]

The model is the trainer's MobileNet-style pilot on the demo's 80×40 input, exported to ONNX
untrained (weights do not change its cost). Each client sends a 160×120 JPEG and waits for the answer
before sending the next. The direct figure is one ONNX Runtime call per image on one thread, with the
same preprocessing: what a client with its own runtime would get.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.broker import free_port  # noqa: E402
from schemas.model_card import ModelCard, decode_outputs, preprocess  # noqa: E402
from tests.servers import wait_for_port  # noqa: E402
from trainer.serve import decode_image  # noqa: E402


def export_pilot(path: Path) -> Path:
    from trainer.export import export_onnx
    from trainer.models import build_model

    export_onnx(build_model("mobilenet", {"width": 80, "height": 40, "crop_top": 40}), path)
    return path


def direct(model: Path, body: bytes, n: int) -> list[float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    card = ModelCard.model_validate_json(session.get_modelmeta().custom_metadata_map["paddock.card"])
    names = [o.name for o in session.get_outputs()]
    name = session.get_inputs()[0].name
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        x = preprocess(decode_image(body), card.input)[None]
        decode_outputs(card, dict(zip(names, session.run(None, {name: x}), strict=True)))
        times.append(time.perf_counter() - t0)
    return times


async def load(url: str, body: bytes, clients: int, total: int) -> tuple[list[float], float]:
    import httpx

    latencies: list[float] = []
    left = [total]

    async def client(http: httpx.AsyncClient) -> None:
        while left[0] > 0:
            left[0] -= 1
            t0 = time.perf_counter()
            r = await http.post(f"{url}/predict", content=body, headers={"content-type": "image/jpeg"})
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await http.post(f"{url}/predict", content=body, headers={"content-type": "image/jpeg"})
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, time.perf_counter() - t0


def _row(name: str, rate: float, lat: list[float]) -> str:
    ms = np.array(lat) * 1000
    return f"{name:34s} {rate:9.1f} {np.percentile(ms, 50):8.2f} {np.percentile(ms, 99):8.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=800)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model = export_pilot(work / "pilot.onnx")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    body = cv2.imencode(".jpg", image)[1].tobytes()
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{os.cpu_count()} CPUs, load average {load_avg:.1f};"
        f" {args.clients} clients, {args.requests} requests"
    )
    print(f"{'':34s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}")
    times = direct(model, body, args.requests)
    print(_row("ONNX Runtime, direct (1 thread)", len(times) / sum(times), times), flush=True)
    for max_batch in (1, 32):
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "deploy.commands.serve",
            str(model),
            "--port",
            str(port),
            "--max-batch",
            str(max_batch),
            "--max-wait-ms",
            "2",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port("127.0.0.1", port, 120, proc)
            latencies, took = asyncio.run(load(f"http://127.0.0.1:{port}", body, args.clients, args.requests))
            label = f"paddock serve, max batch {max_batch}"
            print(_row(label, len(latencies) / took, latencies), flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
