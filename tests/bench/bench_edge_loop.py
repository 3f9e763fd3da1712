"""Control-loop lateness at 30 and 50 Hz with a real ONNX model driving, the whole daemon running.

The daemon runs as in production: connected to a broker (Mosquitto if installed, else the
embedded amqtt), publishing telemetry, recording every frame through the spool with QoS 1, with
the trainer's DonkeyCar-style CNN (exported to ONNX) as its autopilot. Each rate runs with the default
scheduling and with ``loop.realtime_priority = 10`` (SCHED_FIFO control thread; needs root or
CAP_SYS_NICE, otherwise the daemon logs it and the figures match the default). Lateness is how
long after its slot a tick started (the shared CycleTimer measures it); missed ticks are slots
skipped entirely.

    python -m pytest tests/bench/bench_edge_loop.py -s -p no:cacheprovider -o python_files='bench_*.py'
    python -m tests.bench.bench_edge_loop [seconds]
"""

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from schemas.model_card import ModelManifest, sha256_hex
from schemas.payloads import encode_model
from tests.edge.harness import RecordingDaemon, car_config

SECONDS = 10.0


def linear_pilot_envelope() -> bytes:
    """The trainer's DonkeyCar-style linear CNN at its default input, as the hub would deploy it."""
    import torch

    from trainer.export import export_onnx
    from trainer.models import build_model

    torch.manual_seed(0)
    model = build_model("linear").eval()
    with tempfile.TemporaryDirectory() as tmp:
        data = export_onnx(model, Path(tmp) / "model.onnx").read_bytes()
    manifest = ModelManifest(
        name="linear", version="1", sha256=sha256_hex(data), size=len(data), format="onnx", card=model.card()
    )
    return encode_model(manifest, data)


# The simulated body (realtime clock: the world follows the wall clock, like a real car).
SIM = {"camera": {"kind": "sim"}, "actuators": {"kind": "sim"}, "sim": {"track": "oval", "clock": "realtime"}}
BODY = "simulated body (oval, realtime clock, 160x120 rendered camera)"


class Broker:
    """Mosquitto if installed (as in production), else the embedded amqtt broker."""

    def __enter__(self) -> str:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-broker-"))
        if shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists():
            from tests.servers.mosquitto import Mosquitto

            self.server: Any = Mosquitto(self.tmp)
            self.server.start()
            self.name = "mosquitto"
        else:
            from deploy.broker import EmbeddedBroker

            self.server = EmbeddedBroker().start()
            self.name = "amqtt"
        return str(self.server.url)

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


async def one_rate(
    url: str, hz: float, rt: int | None, seconds: float, envelope: bytes, tmp: Path
) -> dict[str, Any]:
    cfg = car_config(
        tmp,
        url,
        car=f"bench-{int(hz)}-{rt or 0}",
        loop={"hz": hz, "start_mode": "autopilot", "realtime_priority": rt},
        publish={"telemetry_hz": 5},
        **SIM,
    )
    async with RecordingDaemon(cfg) as car:
        assert await car.offer_model(envelope)
        car.start_recording()
        await asyncio.sleep(1.0)  # settle
        timer = car.loop.timer
        missed0 = timer.missed
        timer._late.clear()  # lateness of this window only (the timer keeps the last 1024)
        first = len(car.ticks)
        await asyncio.sleep(seconds)
        ticks = car.ticks[first:]
        timing = timer.stats()
        _, frames = car.stop_recording()
        inference = [t.inference_ms for t in ticks if t.inference_ms is not None]
        return {
            "hz": hz,
            "ticks": len(ticks),
            "p50": timing.late_p50_ms,
            "p99": timing.late_p99_ms,
            "max": timing.late_max_ms,
            "missed": timer.missed - missed0,
            "period": (ticks[-1].t_ns - ticks[0].t_ns) / 1e6 / (len(ticks) - 1),
            "inference": sum(inference) / len(inference),
            "frames": frames,
        }


def run(seconds: float = SECONDS) -> list[dict[str, Any]]:
    envelope = linear_pilot_envelope()
    body_name = BODY
    results = []
    with Broker() as url, tempfile.TemporaryDirectory() as tmp:
        print()
        print(f"control loop lateness, {seconds:.0f} s per rate, {body_name}, broker {url}, recording on")
        for rt, hz in [(None, 30.0), (None, 50.0), (10, 30.0), (10, 50.0)]:
            r = asyncio.run(one_rate(url, hz, rt, seconds, envelope, Path(tmp)))
            results.append(r)
            print(
                f"{hz:.0f} Hz, {'SCHED_FIFO 10' if rt else 'default prio '}: "
                f"lateness p50 {r['p50']:.3f} ms, p99 {r['p99']:.3f} ms, max {r['max']:.3f} ms; "
                f"missed ticks {r['missed']} of {r['ticks']}; mean period {r['period']:.3f} ms; "
                f"inference {r['inference']:.2f} ms (ONNX linear pilot); frames recorded {r['frames']}"
            )
    return results


def test_bench_loop_lateness() -> None:
    for r in run():
        assert r["ticks"] > 0


if __name__ == "__main__":
    run(float(sys.argv[1]) if len(sys.argv) > 1 else SECONDS)
