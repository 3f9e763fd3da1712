"""Ingest benchmark: frames/s the hub persists (durable, zero loss) next to a raw paho subscriber
that only counts, through the same private Mosquitto, in the same run.

N publisher processes send 10 KB frames with QoS 1. Two measurements per subscriber, alternating:

* live: the subscriber is connected and the publishers send as fast as the broker takes them;
  rate = frames / (time from the start signal to the subscriber's last frame);
* backlog: the frames wait at the broker (persistent session) and the subscriber drains them;
  rate = frames / (time from its connection to its last frame) — the subscriber's own ceiling.

The hub counts a frame when its spool batch is fsynced (that is when it acknowledges it). After
each hub round every seq of every car is checked in the sealed shards: zero loss, not assumed.

A second baseline counts with the hub's own MQTT client (hub/mqtt.py), acknowledging at once: the
hub's rate over that one is what persisting costs; over raw paho, what a paho subscriber would get.

    python -m pytest tests/bench/bench_hub_ingest.py -s -p no:cacheprovider -o python_files='bench_*.py'
    python tests/bench/bench_hub_ingest.py --publishers 4 --frames 5000
"""

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

FRAME_BYTES = 10_000


def _publisher(url: str, prefix: str, car: str, frames: int, jpeg: bytes, go: Any, done: Any) -> None:
    from schemas.messages import FrameRecord
    from schemas.mqtt_url import BrokerUrl
    from schemas.payloads import encode_frame
    from schemas.topics import Topics

    b = BrokerUrl.parse(url)
    topic = Topics(prefix).frames(car)
    payloads = [
        encode_frame(
            FrameRecord(
                car=car, session="bench", seq=i, t_capture_ns=i, steering=0.0, throttle=0.5, mode="manual"
            ),
            jpeg,
        )
        for i in range(frames)
    ]
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{car}-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(b.host, b.port)
    client.loop_start()
    go.wait()
    infos = [client.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(300)
    client.loop_stop()
    client.disconnect()
    done.put(car)


class Publishers:
    def __init__(self, url: str, prefix: str, n: int, frames: int, jpeg: bytes) -> None:
        ctx = mp.get_context("spawn")
        self.go = ctx.Event()
        self.done: Any = ctx.Queue()
        self.cars = [f"bench-{i}" for i in range(n)]
        self.procs = [
            ctx.Process(
                target=_publisher, args=(url, prefix, car, frames, jpeg, self.go, self.done), daemon=True
            )
            for car in self.cars
        ]

    def start(self) -> None:
        for p in self.procs:
            p.start()
        time.sleep(1.0 + 0.2 * len(self.procs))  # let them connect and build their payloads

    def release(self) -> float:
        t = time.perf_counter()
        self.go.set()
        return t

    def join(self) -> None:
        for _ in self.procs:
            self.done.get(timeout=600)
        for p in self.procs:
            p.join(30)


class RawCounter:
    """The baseline: a paho subscriber (persistent session, QoS 1, auto-ack) that only counts."""

    def __init__(self, url: str, prefix: str, client_id: str) -> None:
        from schemas.mqtt_url import BrokerUrl

        self.b = BrokerUrl.parse(url)
        self.filter = f"{prefix}/v1/cars/+/frames"
        self.client_id = client_id
        self.count = 0
        self.last = 0.0
        self.connected_at = 0.0
        self._connected = threading.Event()

    def connect(self) -> None:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False)

        def on_connect(*_a: Any) -> None:
            self.connected_at = time.perf_counter()
            c.subscribe(self.filter, qos=1)
            self._connected.set()

        def on_message(_c: Any, _u: Any, _m: Any) -> None:
            self.count += 1
            self.last = time.perf_counter()

        c.on_connect = on_connect
        c.on_message = on_message
        c.connect(self.b.host, self.b.port)
        c.loop_start()
        self._connected.wait(10)
        self.client = c

    def disconnect(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self._connected.clear()


class HubClientCounter(RawCounter):
    """A second baseline: the hub's own MQTT client (hub/mqtt.py) acknowledging every message at once
    and only counting. hub / this = what persisting costs, apart from the MQTT client."""

    def connect(self) -> None:
        from hub.ingest.mqtt import Message, MqttClient

        def on_message(msg: Message) -> None:
            self.count += 1
            self.last = time.perf_counter()
            c.ack((msg.mid,), msg.connection)

        def on_connect(_session_present: bool) -> None:
            self.connected_at = time.perf_counter()
            self._connected.set()

        c = MqttClient(
            self.b.host,
            self.b.port,
            client_id=self.client_id,
            subscriptions=[(self.filter, 1)],
            on_message=on_message,
            on_connect=on_connect,
        )
        c.start()
        self._connected.wait(10)
        self.hub_client = c

    def disconnect(self) -> None:
        self.hub_client.stop()
        self._connected.clear()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.002)


def _jpeg() -> bytes:
    from tests.hub.fakecar import make_jpeg

    data = make_jpeg(FRAME_BYTES, seed=1)
    return data + b"\0" * max(
        0, FRAME_BYTES - len(data)
    )  # exactly 10 KB (trailing bytes after EOI are ignored)


def run_raw(url: str, n: int, frames: int, jpeg: bytes, backlog: bool, counter: type[RawCounter]) -> float:
    prefix = f"b{uuid.uuid4().hex[:6]}"
    total = n * frames
    sub = counter(url, prefix, f"raw-{prefix}")
    sub.connect()
    pubs = Publishers(url, prefix, n, frames, jpeg)
    pubs.start()
    if backlog:
        sub.disconnect()
        pubs.release()
        pubs.join()
        sub.connect()
        _wait(lambda: sub.count >= total, 600, "raw subscriber drained")
        t0 = sub.connected_at
    else:
        t0 = pubs.release()
        _wait(lambda: sub.count >= total, 600, "raw subscriber received all")
        pubs.join()
    sub.disconnect()
    assert sub.count == total, (sub.count, total)
    return total / (sub.last - t0)


def run_hub(url: str, n: int, frames: int, jpeg: bytes, backlog: bool, workdir: Path) -> tuple[float, float]:
    """(frames/s persisted, frames/s sealed) — and every seq checked in the shards."""
    from hub import HubConfig, HubService

    prefix = f"b{uuid.uuid4().hex[:6]}"
    total = n * frames
    cfg = HubConfig.from_dict(
        {
            "data_dir": str(workdir / prefix),
            "topic_prefix": prefix,
            "mqtt": {"url": url, "client_id": f"hub-{prefix}"},
            "api": {"port": 0, "token": "bench"},
            "shards": {"idle_seal_s": 1.0},
        }
    )

    async def main() -> tuple[float, float]:
        pubs = Publishers(url, prefix, n, frames, jpeg)

        def persisted() -> int:
            return sum(c.frames_persisted for c in hub.counters.cars.values())

        def sealed() -> int:
            return sum(c.frames_sealed for c in hub.counters.cars.values())

        hub = HubService(cfg)
        await hub.start()
        pubs.start()
        if backlog:
            await hub.stop()  # the broker keeps the hub's session and queues for it
            pubs.release()
            await asyncio.to_thread(pubs.join)
            hub = HubService(cfg)
            await hub.start()
            t0 = time.perf_counter()  # connected (start waits for the connection)
        else:
            t0 = pubs.release()
        await asyncio.to_thread(_wait, lambda: persisted() >= total, 600, "hub persisted all")
        t_persisted = time.perf_counter()
        await asyncio.to_thread(_wait, lambda: sealed() >= total, 600, "hub sealed all")
        t_sealed = time.perf_counter()
        if not backlog:
            await asyncio.to_thread(pubs.join)
        await hub.flush(60)
        stats = hub.ingest_stats()
        await hub.stop()
        _verify(cfg.data_dir / "store", pubs.cars, frames)
        assert stats.frames_persisted == total and stats.missing == 0 and stats.duplicates == 0, stats
        return total / (t_persisted - t0), total / (t_sealed - t0)

    return asyncio.run(main())


def _verify(store: Path, cars: list[str], frames: int) -> None:
    """Zero loss: every seq of every car is in the sealed shards, once."""
    import json

    from schemas.shards import ReadStats, read_shard

    for car in cars:
        base = store / "datasets" / car / "bench"
        manifest = json.loads((base / "manifest.json").read_text())
        seqs: list[int] = []
        for shard in manifest["shards"]:
            stats = ReadStats()
            with (base / shard["name"]).open("rb") as fh:
                seqs += [s.seq for s in read_shard(fh, stats)]
            assert stats.skipped == 0
        assert sorted(seqs) == list(range(frames)), f"{car}: {frames - len(set(seqs))} frames missing"
        assert manifest["gaps"] == []


def bench(publishers: int = 4, frames: int = 3000, rounds: int = 3) -> dict[str, Any]:
    from tests.servers.mosquitto import Mosquitto

    jpeg = _jpeg()
    assert len(jpeg) == FRAME_BYTES
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "raw_live",
            "rawhub_live",
            "hub_live",
            "hub_live_sealed",
            "raw_backlog",
            "rawhub_backlog",
            "hub_backlog",
            "hub_backlog_sealed",
        )
    }
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto").start()
        try:
            for r in range(rounds):
                for backlog in (False, True):
                    mode = "backlog" if backlog else "live"
                    raw = run_raw(broker.url, publishers, frames, jpeg, backlog, RawCounter)
                    persisted, sealed = run_hub(broker.url, publishers, frames, jpeg, backlog, Path(tmp))
                    rawhub = run_raw(broker.url, publishers, frames, jpeg, backlog, HubClientCounter)
                    results[f"raw_{mode}"].append(raw)
                    results[f"rawhub_{mode}"].append(rawhub)
                    results[f"hub_{mode}"].append(persisted)
                    results[f"hub_{mode}_sealed"].append(sealed)
                    print(
                        f"round {r + 1} {mode:7s}: raw paho {raw:6.0f} | raw hub client {rawhub:6.0f} | "
                        f"hub persisted {persisted:6.0f} (sealed {sealed:6.0f}) frames/s | "
                        f"ratio {persisted / raw:.2f} to paho, {persisted / rawhub:.2f} to the hub's client",
                        flush=True,
                    )
        finally:
            broker.stop()
    summary = {k: statistics.median(v) for k, v in results.items()}
    for mode in ("live", "backlog"):  # the ratio of each round's pair (same conditions), then the median
        summary[f"ratio_{mode}"] = statistics.median(
            h / r for h, r in zip(results[f"hub_{mode}"], results[f"raw_{mode}"], strict=True)
        )
        summary[f"ratio_client_{mode}"] = statistics.median(
            h / r for h, r in zip(results[f"hub_{mode}"], results[f"rawhub_{mode}"], strict=True)
        )
    total = publishers * frames
    print(
        f"\nhub ingest benchmark: {publishers} publishers x {frames} frames of {FRAME_BYTES // 1000} KB, "
        f"QoS 1, private Mosquitto, fsync on, {os.cpu_count()} CPUs, median of {rounds} rounds; "
        f"zero loss checked ({total} frames per round, every seq in the shards)"
    )
    for mode in ("live", "backlog"):
        raw, hub, sealed = summary[f"raw_{mode}"], summary[f"hub_{mode}"], summary[f"hub_{mode}_sealed"]
        rawhub = summary[f"rawhub_{mode}"]
        print(
            f"  {mode:7s}: hub {hub:6.0f} frames/s persisted ({hub * FRAME_BYTES / 1e6:5.1f} MB/s), "
            f"sealed {sealed:6.0f}; raw paho {raw:6.0f}, raw on the hub's client {rawhub:6.0f}"
        )
        print(
            f"           ratio to raw paho {summary[f'ratio_{mode}']:.2f} (goal >= 0.8); "
            f"to the hub's own client acking at once {summary[f'ratio_client_{mode}']:.2f} "
            "(medians of per-round ratios)"
        )
    return summary


def test_bench_hub_ingest() -> None:
    n = int(os.environ.get("BENCH_PUBLISHERS", "4"))
    frames = int(os.environ.get("BENCH_FRAMES", "3000"))
    summary = bench(n, frames, int(os.environ.get("BENCH_ROUNDS", "3")))
    assert all(v > 0 for v in summary.values())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--frames", type=int, default=3000, help="frames per publisher")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bench(args.publishers, args.frames, args.rounds)
