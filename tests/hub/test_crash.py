"""A hub killed with SIGKILL in the middle of a recording, and started again, loses no frame.

The hub runs as a real process (``paddock hub serve``); a car records through Mosquitto while the
hub is killed twice. Afterwards every seq the car sent is in the session's shards exactly once.
"""

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from tests.hub.conftest import read_session, wait_until
from tests.hub.fakecar import FakeCar
from tests.servers.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[2]


class HubProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def connections(self) -> int:
        return self.log.read_text(errors="replace").count("connected to mqtt://") if self.log.exists() else 0

    def start(self) -> None:
        before = self.connections()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deploy.cli", "hub", "serve", "--config", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(
            lambda: self.connections() > before or self.proc.poll() is not None, 60, what="hub connected"
        )  # type: ignore[union-attr]
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                return -9
        return self.proc.returncode


def test_sigkill_during_recording_loses_no_frame(mosquitto: Mosquitto, tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:8]
    prefix = f"t{uid}"
    data_dir = tmp_path / "hub"
    config = tmp_path / "hub.toml"
    config.write_text(
        f'data_dir = "hub"\ntopic_prefix = "{prefix}"\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\nclient_id = "crash-{uid}"\n'
        '[api]\nport = 0\ntoken = "t"\n'
        "[shards]\nidle_seal_s = 0.3\nsession_close_s = 120\ntarget_mb = 1\n"
    )
    hub = HubProcess(config, tmp_path / "hub.log")
    hub.start()
    # Fast enough that the hub always holds frames it has received but not yet written when it dies.
    # The car records in three stretches; each kill lands inside a stretch, while frames are flowing,
    # and the car finishes that stretch with the hub down (the broker queues for it). The next
    # stretch starts once the hub is back, so a slow restart cannot let the recording end early.
    n, rate = 12000, 3000
    stretches = [(3000, 2000), (5000, 7000), (4000, None)]  # (frames, kill when the car reaches seq)
    car = FakeCar(mosquitto.url, "crash-car", prefix=prefix).connect()
    sent: list[int] = []
    try:
        car.start_recording("run-1")
        kills = []
        for frames, kill_at in stretches:
            end = car.seq + frames
            recorder = threading.Thread(
                target=lambda frames=frames: sent.extend(car.record("run-1", frames, rate_hz=rate))
            )
            recorder.start()
            if kill_at is not None:
                wait_until(lambda at=kill_at: car.seq >= at, 30, what="the car recording")  # type: ignore[misc]
                seq_at_kill = car.seq
                hub.kill()
                spooled = sum(p.stat().st_size for p in (data_dir / "spool").glob("*.wal"))
                kills.append((seq_at_kill, end, spooled))
            recorder.join(120)
            assert not recorder.is_alive()
            if kill_at is not None:
                hub.start()
        car.stop_recording("run-1", frames=n)
        store = data_dir / "store"
        manifest_path = store / "datasets" / "crash-car" / "run-1" / "manifest.json"

        def sealed() -> bool:
            if not manifest_path.exists():
                return False
            import json

            m = json.loads(manifest_path.read_text())
            return m["state"] == "sealed" and m["frame_count"] == n

        wait_until(sealed, 90, what="every frame sealed")
    finally:
        car.close()
        code = hub.terminate()
    assert code == 0, (tmp_path / "hub.log").read_text()[-3000:]
    # The kills hit the middle of the recording, with frames on the spool that were not sealed yet.
    assert len(kills) == 2
    for seq_at_kill, stretch_end, spooled in kills:
        assert 0 < seq_at_kill < stretch_end  # the car was still sending when the hub died
        assert spooled > 0
    manifest, samples = read_session(store, "crash-car", "run-1")
    seqs = [s.seq for s in samples]
    assert sent == list(range(n))
    assert sorted(seqs) == list(range(n)), f"missing: {sorted(set(range(n)) - set(seqs))[:20]}"
    assert len(seqs) == len(set(seqs)) == n  # nothing twice either
    assert manifest["gaps"] == [] and manifest["frame_count"] == n
    assert all(s.jpeg == car.jpeg for s in samples)
    assert not list((data_dir / "spool").glob("*.wal"))[1:]  # sealed segments were released
