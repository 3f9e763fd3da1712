"""A hub killed with SIGKILL at random moments of a recording, and started again, loses no frame.

The hub runs as a real process (``paddock hub serve``); a car records through Mosquitto while the
hub is killed, at a random seq while frames flow or at a random moment while it seals. Afterwards
every seq the car sent is in the session's shards exactly once. The test kills twice (its seed is
printed); ``tests/bench/bench_faults.py`` kills many times.
"""

import json
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.hub.carproc import HubProcess
from tests.hub.conftest import read_session, wait_until
from tests.hub.fakecar import FakeCar
from tests.servers.mosquitto import Mosquitto


@dataclass
class CrashRun:
    sent: list[int]
    persisted: list[int]
    kills: list[str]  # where each kill landed: "recording at seq N of M" or "sealing after N s"


def hub_config(tmp_path: Path, url: str, prefix: str) -> Path:
    config = tmp_path / "hub.toml"
    config.write_text(
        f'data_dir = "hub"\ntopic_prefix = "{prefix}"\n'
        f'[mqtt]\nurl = "{url}"\nclient_id = "crash-{prefix}"\n'
        '[api]\nport = 0\ntoken = "t"\n'
        "[shards]\nidle_seal_s = 0.3\nsession_close_s = 120\ntarget_mb = 1\n"
    )
    return config


def sigkill_session(
    url: str, tmp_path: Path, kills: int, seed: int, frames_per_stretch: int = 4000
) -> CrashRun:
    """One recording into a hub process killed ``kills`` times at random moments: while frames
    flow (at a random seq) or while it seals the finished session (at a random delay).

    The car records in stretches; a kill during a stretch lets the car finish that stretch with the
    hub down (the broker queues for it), and the next stretch starts once the hub is back, so a slow
    restart cannot let the recording end early. Fast enough (3000 frames/s) that the hub always
    holds frames it has received but not written yet when it dies.
    """
    rng = random.Random(seed)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path / "hub"
    hub = HubProcess(hub_config(tmp_path, url, prefix), tmp_path / "hub.log")
    while_sealing = rng.randint(1, max(1, kills // 3)) if kills > 1 else 0
    stretches = kills - while_sealing + 1
    n = stretches * frames_per_stretch
    car = FakeCar(url, "crash-car", prefix=prefix).connect()
    sent: list[int] = []
    where: list[str] = []
    hub.start()
    try:
        car.start_recording("run-1")
        for i in range(stretches):
            end = car.seq + frames_per_stretch
            kill_at = car.seq + rng.randint(frames_per_stretch // 10, frames_per_stretch * 9 // 10)
            recorder = threading.Thread(
                target=lambda: sent.extend(car.record("run-1", frames_per_stretch, rate_hz=3000))
            )
            recorder.start()
            if i < stretches - 1:
                wait_until(lambda at=kill_at: car.seq >= at, 30, what="the car recording")  # type: ignore[misc]
                seq_at_kill = car.seq
                hub.kill()
                spooled = sum(p.stat().st_size for p in (data_dir / "spool").glob("*.wal"))
                assert seq_at_kill < end and spooled > 0  # frames flowing, frames unsealed on the spool
                where.append(f"recording at seq {seq_at_kill} of {n}")
            recorder.join(120)
            assert not recorder.is_alive()
            if i < stretches - 1:
                hub.start()
        car.stop_recording("run-1", frames=n)
        for _ in range(while_sealing):
            delay = rng.uniform(0.0, 1.0)
            time.sleep(delay)
            hub.kill()
            where.append(f"sealing, {delay:.2f} s after the last frame or restart")
            hub.start()
        wait_until(lambda: sealed(data_dir / "store", n), 90, what="every frame sealed")
    finally:
        car.close()
        code = hub.stop(60)
    assert code == 0, (tmp_path / "hub.log").read_text()[-3000:]
    manifest, samples = read_session(data_dir / "store", "crash-car", "run-1")
    assert manifest["gaps"] == [] and manifest["frame_count"] == n
    assert all(s.jpeg == car.jpeg for s in samples)
    assert not list((data_dir / "spool").glob("*.wal"))[1:]  # sealed segments were released
    return CrashRun(sent, [s.seq for s in samples], where)


def sealed(store: Path, frames: int) -> bool:
    path = store / "datasets" / "crash-car" / "run-1" / "manifest.json"
    if not path.exists():
        return False
    m = json.loads(path.read_text())
    return bool(m["state"] == "sealed" and m["frame_count"] == frames)


def test_sigkill_at_random_moments_loses_no_frame(mosquitto: Mosquitto, tmp_path: Path) -> None:
    seed = int(os.environ.get("PADDOCK_FAULT_SEED", random.randrange(1 << 30)))
    print(f"hub SIGKILL seed {seed} (PADDOCK_FAULT_SEED={seed} replays it)")
    run = sigkill_session(mosquitto.url, tmp_path, kills=2, seed=seed, frames_per_stretch=4000)
    n = len(run.sent)
    print(f"FAULT hub SIGKILL x{len(run.kills)}: sent={n} persisted={len(run.persisted)} "
          f"lost={len(set(run.sent) - set(run.persisted))} kills={run.kills}")  # fmt: skip
    assert len(run.kills) == 2
    assert run.sent == list(range(n))
    assert sorted(run.persisted) == run.sent, f"missing: {sorted(set(run.sent) - set(run.persisted))[:20]}"
    assert len(run.persisted) == len(set(run.persisted)) == n  # nothing twice either
