"""Fault scenarios with real parts, shared by tests/hub/test_faults.py (short runs, asserted) and
tests/bench/bench_faults.py (long runs, printed): a real hub (in-process), a real Mosquitto, real
car daemons as ``paddock car run`` processes on the simulator's body or a test-pattern camera.

A car that needs faults on its link runs inside its own network namespace
(:class:`tests.servers.netns.CarNetwork`) and reaches the broker over a veth link.
"""

import asyncio
import itertools
import random
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.config import CarConfig
from hub import HubConfig, HubService
from schemas.dataset import SessionManifest
from schemas.topics import Topics
from tests.edge.harness import car_config, until
from tests.hub.carproc import CarProcess, Operator
from tests.hub.conftest import hub_test_config, read_session, signed_sim_car
from tests.servers.mosquitto import Mosquitto
from tests.servers.netns import CarNetwork

HZ = 30
DEADMAN_MS = 250.0
REALTIME = {"clock": "realtime", "speedup": 1.0}  # frame capture times on the monotonic clock
# These cars drive the expert pilot: no model runtime to import at start.
NO_RUNTIMES: dict[str, Any] = {"models.preload_runtimes": []}


def hub_config(workdir: Path, broker_url: str, **shards: Any) -> HubConfig:
    return hub_test_config(workdir, broker_url, shards=shards)


def fault_line(scenario: str, sent: int, persisted: int, **extra: Any) -> str:
    """The one line each scenario prints: frames sent, persisted and lost, and what else it saw."""
    more = "".join(f" {k}={v}" for k, v in extra.items())
    line = f"FAULT {scenario}: sent={sent} persisted={persisted} lost={sent - persisted}{more}"
    print(line, flush=True)
    return line


def broker_on(net: CarNetwork, workdir: Path) -> Mosquitto:
    """A broker listening on the host end of the car's link (the hub reaches it there too)."""
    broker = Mosquitto(workdir)
    broker.host = net.host_ip
    broker.start()
    return broker


def persisted(hub: HubService, car: str) -> int:
    c = hub.ingest_stats().cars.get(car)
    return c.frames_persisted if c is not None else 0


def window(records: list[dict[str, Any]], start_ns: int, end_ns: int) -> list[dict[str, Any]]:
    """The frames captured between two moments of the monotonic clock (shared by every process)."""
    return [r for r in records if start_ns <= r["t_capture_ns"] < end_ns]


def max_tick_step(records: list[dict[str, Any]]) -> int:
    ticks = sorted(r["tick"] for r in records)
    return max((b - a for a, b in itertools.pairwise(ticks)), default=0)


async def settled(op: Operator, for_s: float = 3.0) -> None:
    """Wait for telemetry the car sent ``for_s`` after a change of its link: by then a connection
    that the change broke has been noticed and made again. A command sent while the car reconnects
    is dropped (its session is clean, so nothing stale waits for it), so commands wait for this."""
    since = time.time()
    await until(lambda: op.last_telemetry()["ts"] > since + for_s, 60, "the car connected again")


async def drive_manually(op: Operator, stop: asyncio.Event, throttle: float) -> None:
    """A joystick: drive commands at 20 Hz (QoS 0, as the web app sends them) until ``stop``."""
    while not stop.is_set():
        await op.publish(op.t.command(op.car, "drive"), {"steering": 0.0, "throttle": throttle}, qos=0)
        await asyncio.sleep(0.05)


# --- a partition and a flapping link ----------------------------------------------------------------
@dataclass
class PartitionRun:
    sent: int
    manifest: SessionManifest
    records: list[dict[str, Any]]  # the session's frame headers, by seq
    marks: dict[str, int] = field(default_factory=dict)  # monotonic ns of each change of the link
    missed_ticks: int = 0  # the car's own count, from the partition to after the flapping

    def between(self, start: str, end: str) -> list[dict[str, Any]]:
        return window(self.records, self.marks[start], self.marks[end])


async def partition_run(
    net: CarNetwork,
    broker: Mosquitto,
    workdir: Path,
    partition_s: float = 5.0,
    flaps: int = 4,
    joystick_through: bool = False,
) -> PartitionRun:
    """A sim car recording in autopilot through a partition of ``partition_s`` and ``flaps``
    toggles of its link (0.5 s down, 0.5 s up), then in manual through a short partition. With
    ``joystick_through`` a second manual partition follows, during which the joystick keeps
    sending (marks ``stale_down``/``stale_up``): what the car does with drive commands that
    waited in the broker's socket while the link was down."""
    car, session = "car-part", "partition"
    cfg = hub_config(workdir, broker.url)
    marks: dict[str, int] = {}
    async with HubService(cfg) as hub:
        loop = {"hz": HZ, "start_mode": "autopilot", "autopilot": "expert", "deadman_ms": DEADMAN_MS}
        car_cfg = signed_sim_car(workdir, hub, car, sim=REALTIME, loop=loop)
        car_cfg = car_cfg.with_values({**NO_RUNTIMES, "broker.keepalive_s": 2})
        async with Operator(broker.url, Topics(cfg.topic_prefix), car) as op:
            proc = CarProcess(car_cfg, workdir / "car", net).start()
            try:
                await until(lambda: op.births(), 90, "the car's birth")
                await op.command("record", {"action": "start", "session": session})
                await until(lambda: op.json(op.t.telemetry(car)), 20, "telemetry")
                missed_before = op.last_telemetry()["missed_ticks"]
                # Longer than 1.5 keepalives: the broker gives the car up (its will), the car finds
                # the broker gone, spools, and reconnects when the link is back.
                marks["down"] = time.monotonic_ns()
                net.down()
                await asyncio.sleep(partition_s)
                net.up()
                marks["up"] = time.monotonic_ns()
                await until(lambda: len(op.births()) >= 2, 60, "the car back after the partition")
                await asyncio.to_thread(net.flap, 0.5, 0.5, flaps)
                marks["flapped"] = time.monotonic_ns()
                await settled(op)
                missed = op.last_telemetry()["missed_ticks"] - missed_before
                await _manual_partition(op, net, marks)
                await settled(op)
                if joystick_through:
                    await _manual_partition(op, net, marks, "stale_", joystick_through=True)
                    await settled(op)
                stopped = await op.command("record", {"action": "stop"}, limit_s=60)
                manifest = await hub.wait_sealed(car, session, timeout=120)
            finally:
                code = proc.stop()
        assert code == 0, proc.tail()
    _, samples = read_session(cfg.data_dir / "store", car, session)
    records = sorted((s.record for s in samples), key=lambda r: r["seq"])
    return PartitionRun(stopped["frames"], manifest, records, marks, missed)


async def _manual_partition(
    op: Operator,
    net: CarNetwork,
    marks: dict[str, int],
    mark: str = "manual_",
    joystick_through: bool = False,
) -> None:
    """Manual driving from a joystick, then the link goes for 1.5 s; the joystick stops with it,
    or (``joystick_through``) just before it comes back."""
    await op.command("mode", {"mode": "manual"})
    stop = asyncio.Event()
    joystick = asyncio.create_task(drive_manually(op, stop, 0.4))
    await asyncio.sleep(1.5)
    marks[mark + "down"] = time.monotonic_ns()
    net.down()
    if not joystick_through:
        stop.set()
    await asyncio.sleep(1.5)
    stop.set()
    await joystick
    net.up()
    marks[mark + "up"] = time.monotonic_ns()


# --- the car daemon killed --------------------------------------------------------------------------
@dataclass
class KilledSession:
    session: str
    spooled: list[int]  # the seqs waiting in the car's spool when it died
    at_hub: int  # frames the hub had persisted when the car died
    seqs: list[int] = field(default_factory=list)  # the sealed session's seqs
    gaps: list[Any] = field(default_factory=list)

    @property
    def sent(self) -> int:
        """Frames the car got onto its disk or to the hub (what a crash may not lose)."""
        return len(set(self.seqs) | set(self.spooled))


def spooled_frames(spool_dir: Path) -> list[tuple[str, int]]:
    """(session, seq) of the frames waiting in a stopped car's spool, read as the restarted car will."""
    from edge.spool import ForwardSpool
    from schemas.payloads import decode_frame

    spool = ForwardSpool(spool_dir, 1 << 40)
    try:
        records = spool.read(spool.head, max_records=1_000_000, max_bytes=1 << 40)
        headers = [decode_frame(r.data)[0] for r in records]
        return [(h.session, h.seq) for h in headers]
    finally:
        spool.close()


def sealed_through(hub: HubService, car: str, session: str, seq: int) -> bool:
    row = hub.catalog.get_session(car, session)
    return bool(row and row["state"] == "sealed" and row["seq_last"] is not None and row["seq_last"] >= seq)


async def car_kill_run(
    net: CarNetwork, broker: Mosquitto, workdir: Path, kills: int = 1
) -> list[KilledSession]:
    """A sim car records a session and is killed (SIGKILL) 2 s into a partition, so that its spool
    holds a backlog, then started again as systemd would; ``kills`` times, a session each."""
    car = "car-killed"
    cfg = hub_config(workdir, broker.url, session_close_s=3)
    killed: list[KilledSession] = []
    async with HubService(cfg) as hub:
        loop = {"hz": HZ, "start_mode": "autopilot", "autopilot": "expert"}
        car_cfg = signed_sim_car(workdir, hub, car, sim=REALTIME, loop=loop).with_values(NO_RUNTIMES)
        async with Operator(broker.url, Topics(cfg.topic_prefix), car) as op:
            proc = CarProcess(car_cfg, workdir / "car", net).start()
            try:
                for k in range(kills):
                    await until(lambda k=k: len(op.births()) >= k + 1, 90, "the car's birth")  # type: ignore[misc]
                    session = f"killed-{k}"
                    await op.command("record", {"action": "start", "session": session})
                    before = persisted(hub, car)
                    await until(lambda b=before: persisted(hub, car) >= b + HZ, 60, "frames at the hub")  # type: ignore[misc]
                    net.down()
                    await asyncio.sleep(2.0)
                    proc.kill()
                    at_hub = persisted(hub, car) - before
                    spool = await asyncio.to_thread(spooled_frames, car_cfg.spool_dir)
                    killed.append(KilledSession(session, [q for s, q in spool if s == session], at_hub))
                    net.up()
                    proc.start()  # same config, same state directory
                await until(lambda: len(op.births()) >= kills + 1, 90, "the restarted car's birth")
                for ks in killed:
                    # Quiet while the car was down, the session was sealed, then reopened by the
                    # backlog: wait for the seal that holds the last spooled frame.
                    last = max(ks.spooled, default=0)
                    await until(lambda s=ks.session, q=last: sealed_through(hub, car, s, q), 90, "sealed")  # type: ignore[misc]
                    ks.gaps = (await hub.wait_sealed(car, ks.session, timeout=60)).gaps
            finally:
                code = proc.stop()
        assert code == 0, proc.tail()
    for ks in killed:
        _, samples = read_session(cfg.data_dir / "store", car, ks.session)
        ks.seqs = sorted(s.seq for s in samples)
    return killed


# --- the broker killed ------------------------------------------------------------------------------
@dataclass
class BrokerKillRun:
    cars: list[str]
    sent: list[int]
    manifests: list[SessionManifest]
    duplicates: list[int]

    def missing(self, i: int) -> int:
        return sum(b - a + 1 for a, b in self.manifests[i].gaps)


def bench_car(workdir: Path, hub: HubService, car: str, hz: int) -> CarConfig:
    """A bench car (test-pattern camera, no actuators) recording a frame on every tick at ``hz``."""
    pub = workdir / "hub.pub"
    pub.write_text(hub.public_key_pem)
    return car_config(
        workdir, hub.config.mqtt.url, car=car, broker={"prefix": hub.config.topic_prefix},
        models={"public_key": str(pub), "allow_unsigned": False, "preload_runtimes": []},
        loop={"hz": hz}, camera={"kind": "test_pattern", "fps": hz}, publish={"preview_hz": 0},
    )  # fmt: skip


async def broker_kill_run(
    broker: Mosquitto, workdir: Path, cars: int = 2, hz: int = 100, kills: int = 1, seed: int = 0
) -> BrokerKillRun:
    """``cars`` bench cars record at ``hz`` while the broker is killed -9 ``kills`` times (at a
    random moment of its 1 s autosave period) and started again on its persistence file."""
    rng = random.Random(seed)
    cfg = hub_config(workdir, broker.url)
    session, ids = "kill9", [f"car-k9{chr(97 + i)}" for i in range(cars)]
    topics = Topics(cfg.topic_prefix)
    async with HubService(cfg) as hub, AsyncExitStack() as stack:
        ops = [await stack.enter_async_context(Operator(broker.url, topics, car)) for car in ids]
        procs = [CarProcess(bench_car(workdir, hub, car, hz), workdir / "cars").start() for car in ids]
        try:
            await until(lambda: all(op.births() for op in ops), 90, "the cars' births")
            start = {"action": "start", "session": session}
            await asyncio.gather(*(op.command("record", start) for op in ops))
            for k in range(kills):
                enough = 200 * (k + 1)
                await until(lambda n=enough: all(persisted(hub, c) >= n for c in ids), 60, "frames")  # type: ignore[misc]
                await asyncio.sleep(1.0 + rng.random())  # past an autosave, then anywhere in the next
                broker.kill()  # SIGKILL: whatever the broker held in memory only is gone
                await asyncio.sleep(1.0)
                broker.start()  # same port, same persistence file
                await until(lambda k=k: all(len(op.births()) >= k + 2 for op in ops), 90, "the cars back")  # type: ignore[misc]
            await asyncio.sleep(1.0)
            stopped = await asyncio.gather(*(op.command("record", {"action": "stop"}, 60) for op in ops))
            manifests = [await hub.wait_sealed(car, session, timeout=90) for car in ids]
        finally:
            codes = [p.stop() for p in procs]
        stats = hub.ingest_stats()
    assert codes == [0] * cars, procs[0].tail()
    return BrokerKillRun(
        ids, [s["frames"] for s in stopped], manifests, [stats.cars[c].duplicates for c in ids]
    )


async def broker_kill_hub_away_run(
    broker: Mosquitto, workdir: Path, hz: int = 100, away_s: float = 3.0
) -> BrokerKillRun:
    """A bench car records while the hub is stopped (the broker queues for the hub's persistent
    session), and the broker is killed -9 at a random moment of its 1 s autosave period."""
    cfg = hub_config(workdir, broker.url)
    car, session = "car-k9away", "kill9-away"
    async with Operator(broker.url, Topics(cfg.topic_prefix), car) as op:
        proc: CarProcess | None = None
        try:
            async with HubService(cfg) as hub:
                proc = CarProcess(bench_car(workdir, hub, car, hz), workdir / "cars").start()
                await until(lambda: op.births(), 90, "the car's birth")
                await op.command("record", {"action": "start", "session": session})
                await until(lambda: persisted(hub, car) >= 200, 60, "frames at the hub")
            await asyncio.sleep(away_s + random.random())  # the hub is away: frames queue at the broker
            broker.kill()
            await asyncio.sleep(1.0)
            broker.start()
            await until(lambda: len(op.births()) >= 2, 90, "the car back")
            async with HubService(cfg) as hub:
                await asyncio.sleep(1.0)
                stopped = await op.command("record", {"action": "stop"}, 60)
                manifest = await hub.wait_sealed(car, session, timeout=90)
                duplicates = hub.ingest_stats().cars[car].duplicates
        finally:
            code = proc.stop() if proc is not None else 0
    assert code == 0 and proc is not None, proc.tail() if proc else ""
    return BrokerKillRun([car], [stopped["frames"]], [manifest], [duplicates])
