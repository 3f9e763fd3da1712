"""Fault scenarios, longer than their tests (tests/hub/test_faults.py, tests/hub/test_crash.py),
printed as one table: frames sent, persisted and lost per scenario.

* a car ↔ broker partition of ``--partition-s`` and ``--flaps`` toggles of the link, the car in
  its own network namespace (needs root and iproute2);
* the car daemon killed (SIGKILL) ``--car-kills`` times 2 s into a partition, and restarted;
* the broker killed -9 ``--broker-kills`` times while 2 cars record at 100 frames/s, and once
  while the hub is away (the broker holds the hub's queue);
* the hub killed (SIGKILL) ``--hub-kills`` times at random moments of a recording.

    python tests/bench/bench_faults.py
    python -m pytest tests/bench/bench_faults.py -s -p no:cacheprovider -o python_files='bench_*.py'
"""

import argparse
import asyncio
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Row = tuple[str, int, int, str]  # scenario, sent, persisted, notes


def _row(row: Row) -> str:
    name, sent, kept, note = row
    return f"| {name:34s} | {sent:6d} | {kept:9d} | {sent - kept:4d} | {note}"


async def _network_faults(workdir: Path, partition_s: float, flaps: int, car_kills: int) -> list[Row]:
    from tests.hub.faults import broker_on, car_kill_run, partition_run
    from tests.servers.netns import CarNetwork, netns_available

    if (why := netns_available()) is not None:
        print(f"skipping the partition and car kill scenarios: {why}")
        return []
    rows: list[Row] = []
    for name, scenario in (("partition", 0), ("car kill", 1)):
        net = CarNetwork().create()
        broker = broker_on(net, workdir / f"mosquitto-{scenario}")
        try:
            if scenario == 0:
                run = await partition_run(
                    net, broker, workdir / name, partition_s, flaps, joystick_through=True
                )
                m = run.manifest
                cut = len(run.between("down", "up"))
                note = f"{cut} frames recorded while cut, {run.missed_ticks} missed ticks, gaps {m.gaps}"
                healed = run.marks["stale_up"]
                stale = [r for r in run.records if r["t_capture_ns"] >= healed and r["throttle"] > 0]
                span = (stale[-1]["t_capture_ns"] - healed) / 1e6 if stale else 0.0
                print(
                    f"joystick kept sending through a 1.5 s partition: {len(stale)} frames driven at its "
                    f"throttle after the link came back, the last {span:.0f} ms after it"
                )
                rows.append((f"partition {partition_s:.0f} s + {flaps} flaps", run.sent, m.frame_count, note))
                print(_row(rows[-1]), flush=True)
            else:
                killed = await car_kill_run(net, broker, workdir / name, car_kills)
                spooled = sum(len(k.spooled) for k in killed)
                sent, kept = sum(k.sent for k in killed), sum(len(k.seqs) for k in killed)
                note = f"{spooled} frames on the car's spool at its deaths, gaps {[k.gaps for k in killed]}"
                rows.append((f"car SIGKILL + restart x{car_kills}", sent, kept, note))
                print(_row(rows[-1]), flush=True)
        finally:
            broker.stop()
            net.delete()
    return rows


async def _broker_faults(workdir: Path, kills: int, seed: int) -> list[Row]:
    from tests.hub.faults import broker_kill_hub_away_run, broker_kill_run
    from tests.servers.mosquitto import Mosquitto

    rows: list[Row] = []
    broker = Mosquitto(workdir / "mosquitto-k9")
    broker.start()
    try:
        run = await broker_kill_run(broker, workdir / "k9", cars=2, hz=100, kills=kills, seed=seed)
        note = f"2 cars at 100 frames/s, hub online; duplicates {run.duplicates}"
        sent, kept = sum(run.sent), sum(m.frame_count for m in run.manifests)
        rows.append((f"broker kill -9 x{kills}", sent, kept, note))
        print(_row(rows[-1]), flush=True)
        away = await broker_kill_hub_away_run(broker, workdir / "k9away")
        m = away.manifests[0]
        note = f"hub away 3-4 s, broker autosave 1 s; gaps {m.gaps}"
        rows.append(("broker kill -9, hub away", away.sent[0], m.frame_count, note))
        print(_row(rows[-1]), flush=True)
    finally:
        broker.stop()
    return rows


def _hub_kills(workdir: Path, kills: int, seed: int) -> list[Row]:
    from tests.hub.test_crash import sigkill_session
    from tests.servers.mosquitto import Mosquitto

    broker = Mosquitto(workdir / "mosquitto-hub")
    broker.start()
    (workdir / "hubkill").mkdir()
    try:
        run = sigkill_session(
            broker.url, workdir / "hubkill", kills=kills, seed=seed, frames_per_stretch=3000
        )
    finally:
        broker.stop()
    where = sum("sealing" in k for k in run.kills)
    note = f"{kills - where} while recording at 3000 frames/s, {where} while sealing; seed {seed}"
    row = (f"hub SIGKILL x{kills}", len(run.sent), len(set(run.persisted)), note)
    print(_row(row), flush=True)
    return [row]


def bench(
    partition_s: float = 30, flaps: int = 20, car_kills: int = 3, broker_kills: int = 3, hub_kills: int = 10
) -> list[Row]:
    seed = random.randrange(1 << 30)
    workdir = Path(tempfile.mkdtemp(prefix="faults-"))
    rows = asyncio.run(_network_faults(workdir, partition_s, flaps, car_kills))
    rows += asyncio.run(_broker_faults(workdir, broker_kills, seed))
    rows += _hub_kills(workdir, hub_kills, seed)
    print(f"\nfault scenarios ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}):")
    print(f"| {'scenario':34s} | {'sent':>6s} | {'persisted':>9s} | {'lost':>4s} | notes")
    print(f"|{'-' * 36}|{'-' * 8}|{'-' * 11}|{'-' * 6}|------")
    for row in rows:
        print(_row(row))
    return rows


def test_bench_faults() -> None:
    rows = bench()
    assert rows and all(sent > 0 for _, sent, _, _ in rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--partition-s", type=float, default=30, help="length of the partition (default 30)")
    parser.add_argument("--flaps", type=int, default=20, help="toggles of the link, 0.5 s down, 0.5 s up")
    parser.add_argument("--car-kills", type=int, default=3, help="car daemon SIGKILLs (default 3)")
    parser.add_argument("--broker-kills", type=int, default=3, help="broker kill -9s under load (default 3)")
    parser.add_argument("--hub-kills", type=int, default=10, help="hub SIGKILLs (default 10)")
    a = parser.parse_args()
    bench(a.partition_s, a.flaps, a.car_kills, a.broker_kills, a.hub_kills)
