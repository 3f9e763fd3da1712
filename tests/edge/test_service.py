"""The daemon as a service: `paddock car run` in a subprocess speaking systemd's notify protocol,
its last will on a crash, the unit file, and watchdog pings that stop when a part stalls."""

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deploy.cli import app
from deploy.systemd import DEFAULT_EXEC, car_unit
from edge.pilots import Decision, Pilot
from edge.systemd import Notifier
from firmware.camera import Frame
from schemas.messages import CarStatus
from tests.edge.bodies import bench_body
from tests.edge.harness import Observer, RecordingDaemon, T, car_config, clear_retained, until
from tests.servers import require_binary

ROOT = Path(__file__).resolve().parents[2]


class NotifySocket:
    """What systemd listens on: a datagram socket collecting every notification with its time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []

    def poll(self) -> list[tuple[float, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append((time.monotonic(), data.decode()))

    def has(self, text: str) -> bool:
        return any(text in m for _, m in self.poll())

    def pings(self) -> list[float]:
        return [t for t, m in self.poll() if m == "WATCHDOG=1"]

    def close(self) -> None:
        self.sock.close()


def write_config(path: Path, url: str, state: Path, car: str) -> None:
    path.write_text(
        f'state_dir = "{state}"\nlog_level = "warning"\n'
        f'[car]\nid = "{car}"\n'
        f'[broker]\nurl = "{url}"\nkeepalive_s = 5\nreconnect_min_s = 0.2\n'
        "[loop]\nhz = 50\n"
        '[camera]\nkind = "test_pattern"\n'
        '[actuators]\nkind = "none"\n'
        '[models]\nallow_unsigned = true\npreload_runtimes = ["onnx"]\n'
    )


def start_car(config: Path, notify: NotifySocket, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"}
    return subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "car", "run", "--config", str(config)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


async def test_car_run_speaks_systemd_notify_and_leaves_a_will_when_killed(
    mosquitto: Any, tmp_path: Path
) -> None:
    car = "car-service"
    config = tmp_path / "car.toml"
    write_config(config, mosquitto.url, tmp_path / "state", car)
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "car.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        async with Observer(mosquitto.url, [T.car_status(car)]) as obs:
            procs.append(start_car(config, notify, log))
            await until(lambda: notify.has("READY=1"), 30, "READY=1")
            await until(lambda: len(notify.pings()) >= 5, 10, "watchdog pings")
            pings = notify.pings()
            gaps = [b - a for a, b in itertools.pairwise(pings)]
            assert max(gaps) < 0.4  # WATCHDOG_USEC=400 ms: a ping every ~100 ms
            births = await until(lambda: obs.json(T.car_status(car)), what="birth")
            bdseq = births[-1]["bdseq"]
            # a crash: the broker publishes the last will, with the bdseq of that connection
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(10)
            will = await until(
                lambda: [s for s in obs.json(T.car_status(car)) if s["state"] == "offline"], what="last will"
            )
            assert CarStatus.from_dict(will[-1]).bdseq == bdseq
            # restarted (as systemd would): a newer bdseq, so the hub can tell a stale will
            n = len(notify.poll())
            procs.append(start_car(config, notify, log))
            await until(lambda: any("READY=1" in m for _, m in notify.poll()[n:]), 30, "READY=1 again")
            online = await until(
                lambda: [
                    s for s in obs.json(T.car_status(car)) if s["state"] == "online" and s["bdseq"] > bdseq
                ],
                what="second birth",
            )
            assert online[-1]["bdseq"] == bdseq + 1
            # SIGTERM: a clean stop, its own death message, exit code 0
            procs[-1].send_signal(signal.SIGTERM)
            assert procs[-1].wait(30) == 0, log.read_text()[-2000:]
            assert notify.has("STOPPING=1")
            deaths = await until(
                lambda: [
                    s
                    for s in obs.json(T.car_status(car))
                    if s["state"] == "offline" and s["bdseq"] == bdseq + 1
                ],
                what="clean death",
            )
            assert deaths
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        notify.close()
    await clear_retained(mosquitto.url, [T.car_status(car), T.model_state(car)])


class StallPilot(Pilot):
    name = "stall"

    def __init__(self) -> None:
        self.stall_s = 0.0

    def act(self, frame: Frame | None) -> Decision:
        if self.stall_s:
            time.sleep(self.stall_s)
            self.stall_s = 0.0
        return Decision(0.0, 0.1)


async def test_watchdog_pings_stop_while_the_loop_or_the_event_loop_stalls(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"})
    pilot = StallPilot()
    cfg = car_config(
        tmp_path, "mqtt://127.0.0.1:9", car="car-wd", loop={"start_mode": "autopilot", "autopilot": "stall"}
    )
    body, _ = bench_body()
    try:
        async with RecordingDaemon(cfg, body=body, pilots={"stall": pilot}, notifier=notifier):
            assert notify.has("READY=1")
            await asyncio.sleep(0.5)
            pilot.stall_s = 1.0  # the control loop hangs for a second
            t0 = time.monotonic()
            await asyncio.sleep(1.5)
            during = [t for t in notify.pings() if t0 + 0.05 < t < t0 + 0.95]
            assert not during
            assert [t for t in notify.pings() if t > t0 + 1.1]  # pings resume after it
            t1 = time.monotonic()
            time.sleep(1.0)  # noqa: ASYNC251 - on purpose: the event loop hangs, the control loop does not
            await asyncio.sleep(0.5)
            during = [t for t in notify.pings() if t1 + 0.05 < t < t1 + 0.95]
            assert not during  # a stalled event loop (MQTT, recorder) withholds the pings too
            assert [t for t in notify.pings() if t > t1 + 1.0]
    finally:
        notify.close()


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze", "systemd")
    paddock = shutil.which("paddock") or str(Path(sys.executable).with_name("paddock"))
    assert Path(paddock).exists()
    result = CliRunner().invoke(app, ["car", "unit", "--paddock", paddock])
    assert result.exit_code == 0
    shipped = (ROOT / "deploy" / "systemd" / "paddock-car.service").read_text()
    assert result.output == shipped.replace(DEFAULT_EXEC, paddock) == car_unit(paddock)
    for line in ("Type=notify", "WatchdogSec=", "NotifyAccess=main", "Restart=always"):
        assert line in result.output
    unit = tmp_path / "paddock-car.service"
    unit.write_text(result.output)
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "paddock-car.service" not in out.stderr  # no warning about our unit


def test_config_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    example = runner.invoke(app, ["car", "config", "--example", "--car-id", "demo-3"])
    assert example.exit_code == 0 and 'id = "demo-3"' in example.output
    good = tmp_path / "car.toml"
    good.write_text(example.output)
    checked = runner.invoke(app, ["car", "config", "--check", str(good)])
    assert checked.exit_code == 0 and '"demo-3"' in checked.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[car]\nid = 'x'\n[loop]\nhz = 0\n")
    out = runner.invoke(app, ["car", "config", "--check", str(bad)])
    assert out.exit_code == 2 and "loop.hz" in out.output and "bad.toml" in out.output
    out = runner.invoke(app, ["car", "run", "--config", str(bad)])
    assert out.exit_code == 2 and "loop.hz" in out.output


@pytest.mark.parametrize(
    "argv", [["car", "--help"], ["car", "run", "--help"], ["car", "calibrate", "--help"]]
)
def test_help(argv: list[str]) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0 and "Usage" in result.output


def test_calibrate_command_without_hardware(tmp_path: Path) -> None:
    cal = tmp_path / "calibration.toml"
    answers = "\n".join(["+", "", "", "", "", "", "", "0.8", "", ""]) + "\n"
    result = CliRunner().invoke(
        app, ["car", "calibrate", "--calibration", str(cal), "--pin-factory", "mock"], input=answers
    )
    assert result.exit_code == 0, result.output
    assert "Steering CENTRE" in result.output and f"saved {cal}" in result.output
    from firmware.calibration import load_calibration

    saved = load_calibration(cal)
    assert saved.steering.center_us == 1510 and saved.steering.limit == 0.8
    result = CliRunner().invoke(
        app, ["car", "calibrate", "--calibration", str(cal), "--pin-factory", "mock"], input="q\n"
    )
    assert result.exit_code == 1 and "nothing saved" in result.output
    assert load_calibration(cal) == saved
