"""Soak: N simulated cars record for M minutes into a real hub, through a private Mosquitto.

Each car is a real car daemon (``paddock car run``) on the simulator's body, driven by the expert
pilot, recording one session per minute. The hub runs as ``paddock hub serve``. Every minute the
benchmark prints the frames the cars sent and the hub persisted so far, and the resident memory
(RSS) of the hub and of its sealer process. At the end every session must be sealed with every
frame the car counted: it prints frames sent, persisted and lost, and the hub's RSS growth from
minute 2 to the end (goals: 0 lost, growth < 10 %).

    python tests/bench/bench_soak.py --cars 10 --minutes 10
    python -m pytest tests/bench/bench_soak.py -s -p no:cacheprovider -o python_files='bench_*.py'
      (BENCH_CARS, BENCH_MINUTES, BENCH_HZ; defaults 10 x 10 at 30 Hz)
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class Soak:
    cars: int
    minutes: float
    hz: float
    sent: int = 0
    sessions: list[tuple[str, str, int]] = field(default_factory=list)  # (car, session, frames sent)
    rss: list[tuple[int, int, int]] = field(default_factory=list)  # (minute, hub KiB, sealer KiB)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(p) for p in task.read_text().split()]
    return out


def _persisted(store: Path, sessions: list[tuple[str, str, int]]) -> tuple[int, int]:
    """Frames in sealed manifests and sessions sealed, over ``sessions``."""
    frames = sealed = 0
    for car, session, _ in sessions:
        path = store / "datasets" / car / session / "manifest.json"
        if path.exists():
            m = json.loads(path.read_text())
            frames += m["frame_count"]
            sealed += m["state"] == "sealed"
    return frames, sealed


def _hub_config(workdir: Path, url: str, prefix: str) -> Path:
    config = workdir / "hub.toml"
    config.write_text(
        f'data_dir = "{workdir / "hub"}"\ntopic_prefix = "{prefix}"\n'
        f'[mqtt]\nurl = "{url}"\nclient_id = "soak-hub"\n'
        '[api]\nport = 0\ntoken = "soak"\n'
        "[shards]\nsession_close_s = 600\n"
    )
    return config


def _car_config(workdir: Path, url: str, prefix: str, pub: Path, car: str, hz: float) -> Any:
    from tests.edge.harness import sim_car_config

    models = {"public_key": str(pub), "allow_unsigned": False, "preload_runtimes": ["onnx"]}
    return sim_car_config(
        workdir, url, car=car, broker={"prefix": prefix}, models=models,
        sim={"clock": "realtime", "speedup": 1.0, "seed": hash(car) % 1000},
        loop={"hz": hz, "start_mode": "autopilot", "autopilot": "expert"},
        publish={"telemetry_hz": 2, "preview_hz": 0},
    ).with_values({"log_level": "warning"})  # fmt: skip


async def _rotate(ops: list[Any], soak: Soak, minute: int, stop: bool) -> None:
    """End every car's session of this minute and (unless ``stop``) start the next one."""

    async def one(op: Any) -> None:
        if minute > 0:
            data = await op.command("record", {"action": "stop"}, limit_s=120)
            soak.sessions.append((op.car, data["session"], data["frames"]))
            soak.sent += data["frames"]
        if not stop:
            await op.command("record", {"action": "start", "session": f"soak-{minute:03d}"}, limit_s=120)

    await asyncio.gather(*(one(op) for op in ops))


async def run(cars: int = 10, minutes: float = 10, hz: float = 30) -> Soak:
    from contextlib import AsyncExitStack

    from schemas.signing import generate_private_key, public_key_pem
    from schemas.topics import Topics
    from tests.edge.harness import until
    from tests.hub.carproc import CarProcess, HubProcess, Operator, rss_kb
    from tests.servers.mosquitto import Mosquitto

    soak = Soak(cars, minutes, hz)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    prefix = f"soak{uuid.uuid4().hex[:6]}"
    topics = Topics(prefix)
    broker = Mosquitto(workdir / "mosquitto")
    broker.start()
    hub = HubProcess(_hub_config(workdir, broker.url, prefix), workdir / "hub.log")
    pub = workdir / "hub.pub"  # the cars trust a key of their own: no model is deployed here
    pub.write_bytes(public_key_pem(generate_private_key().public_key()))
    procs: list[CarProcess] = []
    try:
        hub.start()
        assert hub.proc is not None
        ids = [f"soak-{i:02d}" for i in range(cars)]
        async with AsyncExitStack() as stack:
            ops = [await stack.enter_async_context(Operator(broker.url, topics, car)) for car in ids]
            for car in ids:
                procs.append(
                    CarProcess(_car_config(workdir, broker.url, prefix, pub, car, hz), workdir).start()
                )
            await until(lambda: all(op.births() for op in ops), 300, "every car's birth")
            print(
                f"soak: {cars} cars x {minutes} min at {hz} Hz, hub pid {hub.proc.pid}, {os.cpu_count()} CPUs"
            )
            print(" min   sent     sealed  hub RSS MB  sealer RSS MB  load   (sent: sessions ended so far)")
            t0 = time.monotonic()
            steps = max(1, round(minutes))
            for minute in range(steps + 1):
                await _rotate(ops, soak, minute, stop=minute == steps)
                if minute > 0:
                    sealer = sum(rss_kb(p) for p in _children(hub.proc.pid))
                    soak.rss.append((minute, rss_kb(hub.proc.pid), sealer))
                    persisted, _ = _persisted(workdir / "hub" / "store", soak.sessions)
                    print(
                        f" {minute:3d} {soak.sent:6d} {persisted:10d} {soak.rss[-1][1] / 1024:11.1f} "
                        f"{sealer / 1024:14.1f}  {os.getloadavg()[0]:.1f}", flush=True,
                    )  # fmt: skip
                if minute < steps:
                    await asyncio.sleep(max(0.0, t0 + (minute + 1) * 60 * minutes / steps - time.monotonic()))
        store = workdir / "hub" / "store"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            persisted, sealed = _persisted(store, soak.sessions)
            if sealed == len(soak.sessions) and persisted == soak.sent:
                break
            await asyncio.sleep(1.0)
        persisted, sealed = _persisted(store, soak.sessions)
    finally:
        for p in procs:
            p.stop()
        hub.stop(60)
        broker.stop()
    base = next((kb for m, kb, _ in soak.rss if m == 2), soak.rss[0][1])
    growth = (soak.rss[-1][1] - base) / base * 100
    print(
        f"soak result: {cars} cars x {minutes} min: frames sent {soak.sent}, persisted {persisted}, "
        f"lost {soak.sent - persisted}; sessions {len(soak.sessions)}, sealed {sealed}; hub RSS "
        f"{base / 1024:.1f} MB at minute 2 -> {soak.rss[-1][1] / 1024:.1f} MB at the end ({growth:+.1f} %; "
        "goal < 10 %)"
    )
    soak.sessions.sort()
    return soak


def test_bench_soak() -> None:
    env = os.environ.get
    soak = asyncio.run(
        run(int(env("BENCH_CARS", "10")), float(env("BENCH_MINUTES", "10")), float(env("BENCH_HZ", "30")))
    )
    assert soak.sent > 0 and soak.rss


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cars", type=int, default=10, help="simulated cars (default 10)")
    parser.add_argument("--minutes", type=float, default=10, help="minutes of recording (default 10)")
    parser.add_argument(
        "--hz", type=float, default=30, help="each car's control rate = frames/s (default 30)"
    )
    args = parser.parse_args()
    asyncio.run(run(args.cars, args.minutes, args.hz))
