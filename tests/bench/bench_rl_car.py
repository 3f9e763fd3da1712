"""An RL model on a car: DeepRacer's defaults trained on reinvent_base until 3 clean evaluation laps
(tests/bench/bench_rl_train.py), exported to ONNX with its action space, signed, published retained
over MQTT to a simulated car daemon (the real daemon, simulated body, on reinvent_base) that is
already driving, hot-swapped in, and driving a lap. Prints the training minutes, the swap time and
the car's lap (time, off-track count), as the car reports them in its events.

    python -m tests.bench.bench_rl_car [budget minutes, default 30]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from schemas.signing import generate_private_key
from tests.bench.bench_edge_loop import Broker
from tests.bench.bench_rl_train import _track
from tests.bench.bench_rl_train import run as train_to_clean_laps
from tests.edge.harness import Observer, RecordingDaemon, T, car_config, until
from tests.edge.modelkit import signed_envelope
from trainer.rl.export import export


async def drive(url: str, onnx: bytes, card: Any, tmp: Path) -> None:
    key = generate_private_key()
    car = "rl-car"
    cfg = car_config(
        tmp, url, key, car=car, camera={"kind": "sim"}, actuators={"kind": "sim"},
        sim={"track": _track(), "clock": "lockstep", "speedup": 2},
        loop={"hz": 15, "start_mode": "autopilot"}, publish={"telemetry_hz": 5, "preview_hz": 0},
    )  # fmt: skip
    async with Observer(url, [f"paddock/v1/cars/{car}/#"]) as obs, RecordingDaemon(cfg) as daemon:
        await until(lambda: daemon.link.connected.is_set())
        sent = time.monotonic()
        await obs.publish(T.car_model(car), signed_envelope(onnx, key, car=car, name="deepracer", version="1",
                                                             model_card=card), retain=True)  # fmt: skip
        swapped = await until(lambda: obs.events(car, "model_swapped"), 120, "model swap")
        print(f"hot-swap: model_swapped after {time.monotonic() - sent:.2f} s; event: {swapped[0]}")
        laps = await until(lambda: [e for e in obs.events(car, "lap") if e.get("model") == "deepracer:1"],
                           600, "a lap on the RL model")  # fmt: skip
        print(f"lap on the RL model after the swap: {laps[0]}")
        off = [e for e in obs.events(car, "off_track") if e.get("model") == "deepracer:1"]
        print(f"off-track events on the RL model before that lap: {len(off)}")


def main(budget: float = 30.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        train_to_clean_laps(budget, 2, 0, keep=model)
        path, card = export(model)
        with Broker() as url:
            asyncio.run(drive(url, path.read_bytes(), card, Path(tmp)))


def test_bench_rl_car() -> None:
    main()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0)
