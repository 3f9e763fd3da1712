"""Simulated cars: the daemon on the simulator's body, driving laps against real brokers."""

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.pilots import Decision, Pilot
from firmware.camera import Frame
from schemas.messages import Telemetry
from schemas.signing import generate_private_key
from tests.edge.harness import Observer, RecordingDaemon, T, car_config, clear_retained, sim_car_config, until
from tests.edge.modelkit import signed_envelope
from tests.edge.trained import CARD, tiny_pilot

KEY = generate_private_key()
ROOT = Path(__file__).resolve().parents[2]


def sim_config(tmp_path: Path, url: str, car: str, key: Any = None, **loop: Any) -> Any:
    return sim_car_config(tmp_path, url, key, car=car, loop=loop)


async def test_expert_records_laps_with_ground_truth(mosquitto: Any, tmp_path: Path) -> None:
    car = "sim-expert"
    cfg = sim_config(tmp_path, mosquitto.url, car, autopilot="expert")
    async with Observer(mosquitto.url, [f"paddock/v1/cars/{car}/#"]) as obs:
        async with RecordingDaemon(cfg) as daemon:
            assert "expert" in daemon.pilots
            session = daemon.start_recording()
            laps = await until(lambda: obs.events(car, "lap"), 60, "a lap")
            await until(lambda: any(t.get("lap") == 1 for t in obs.json(T.telemetry(car))), what="lap 1")
            daemon.stop_recording()
            await until(lambda: daemon.spool.pending_records == 0, what="spool drained")
        lap = laps[0]
        assert lap["lap"] == 1 and 8 < lap["lap_time_s"] < 20 and lap["off_track_count"] == 0
        assert lap["model"] == "expert" and lap["mode"] == "autopilot"
        telemetry = [Telemetry.from_dict(t) for t in obs.json(T.telemetry(car))]
        assert max(t.speed or 0 for t in telemetry) > 1.0
        assert any(t.lap == 1 for t in telemetry) and all(t.off_track is False for t in telemetry)
        assert {round(t.progress or 0) // 25 for t in telemetry} >= {0, 1, 2, 3}
        # model health: the lap time and input statistics of the camera travel in telemetry
        assert any(t.lap_time_s == lap["lap_time_s"] for t in telemetry)
        stats = [t.input_stats for t in telemetry if t.input_stats is not None]
        assert stats and all(s.frames >= 5 for s in stats)
        assert abs(sum(stats[0].brightness_hist) - 1) < 1e-3 and 0 < stats[0].brightness_mean < 1
        assert telemetry[-1].interventions == 0 and telemetry[-1].off_track_count == 0
        frames = [r for r, _, _ in obs.frames(car) if r.session == session]
        assert len(frames) > 250  # a lap at 30 frames per simulated second
        extra = frames[-1].model_extra
        assert {"x", "y", "yaw", "progress", "lap", "sim_time", "distance_from_center"} <= set(extra)
        assert all(abs(f.model_extra["distance_from_center"]) < 0.2 for f in frames)
        assert all(f.model == "expert" and 0.0 < f.throttle < 1.0 for f in frames[30:])
    await clear_retained(mosquitto.url, [T.car_status(car), T.model_state(car)])


def _race_line_file(tmp_path: Path) -> Path:
    """A smooth line round the oval at the fastest speeds the car can drive it (no evolution)."""
    from firmware.sim import get_track
    from firmware.sim.race_line import line_csv
    from trainer.race.line import LineEvaluator, smoothest_genes

    ev = LineEvaluator(get_track("oval"))
    est = ev.estimate(smoothest_genes(ev))
    path = tmp_path / "line.csv"
    path.write_text(line_csv(est.points, est.speeds, est.offsets, est.curvature))
    return path


async def test_the_race_line_pilot_drives_its_line_faster_than_the_expert(
    mosquitto: Any, tmp_path: Path
) -> None:
    car = "sim-race-line"
    cfg = sim_config(tmp_path, mosquitto.url, car, autopilot="race-line")
    cfg = cfg.with_values({"sim.race_line": str(_race_line_file(tmp_path))}, "test")
    async with Observer(mosquitto.url, [f"paddock/v1/cars/{car}/#"]) as obs, RecordingDaemon(cfg) as daemon:
        assert {"expert", "race-line"} <= set(daemon.pilots)
        laps = await until(lambda: obs.events(car, "lap")[1:], 60, "a flying lap")
    # The expert laps the oval in about 10 s; the line, from the first flying lap, well under.
    lap = laps[0]
    assert lap["model"] == "race-line" and lap["off_track_count"] == 0
    assert 4 < lap["lap_time_s"] < 8.5
    telemetry = [Telemetry.from_dict(t) for t in obs.json(T.telemetry(car))]
    assert max(t.speed or 0 for t in telemetry) > 2.5
    await clear_retained(mosquitto.url, [T.car_status(car), T.model_state(car)])


async def test_without_a_line_file_there_is_no_race_line_pilot(mosquitto: Any, tmp_path: Path) -> None:
    cfg = sim_config(tmp_path, mosquitto.url, "sim-no-line")
    async with RecordingDaemon(cfg) as daemon:
        assert "expert" in daemon.pilots and "race-line" not in daemon.pilots
    await clear_retained(mosquitto.url, [T.car_status("sim-no-line"), T.model_state("sim-no-line")])


async def test_an_onnx_model_trained_on_expert_frames_drives_laps(broker_url: str, tmp_path: Path) -> None:
    model = tiny_pilot()
    car = "sim-model"
    cfg = sim_config(tmp_path, broker_url, car, KEY)
    async with (
        Observer(broker_url, [f"paddock/v1/cars/{car}/#"]) as obs,
        RecordingDaemon(cfg) as daemon,
    ):
        await until(lambda: daemon.link.connected.is_set())
        await obs.publish(
            T.car_model(car),
            signed_envelope(model, KEY, car=car, name="tiny", version="1", model_card=CARD),
            retain=True,
        )
        await until(lambda: obs.events(car, "model_swapped"), what="model swap")
        laps = await until(lambda: len(obs.events(car, "lap")) >= 2, 90, "two laps on the model")
        assert laps
        laps = obs.events(car, "lap")
        assert all(lap["model"] == "tiny:1" and lap["off_track_count"] == 0 for lap in laps[:2])
        assert not obs.events(car, "off_track")
        assert all(9 < lap["lap_time_s"] < 25 for lap in laps[:2])
        inference = [t["inference_ms"] for t in obs.json(T.telemetry(car)) if t.get("inference_ms")]
        assert inference and max(inference) < 30
    await clear_retained(broker_url, [T.car_model(car), T.model_state(car), T.car_status(car)])


class StraightOn(Pilot):
    """Ignores the bends: leaves the oval at the end of its first straight."""

    name = "straight"
    needs_frame = False

    def act(self, frame: Frame | None) -> Decision:
        return Decision(0.0, 0.5)


async def test_expert_noise_injection_records_the_experts_own_action_as_label(
    mosquitto: Any, tmp_path: Path
) -> None:
    car = "sim-dart"
    cfg = sim_config(tmp_path, mosquitto.url, car, autopilot="expert").with_values(
        {"sim.expert_noise": 0.3, "sim.expert_noise_time_s": 0.5}
    )
    async with Observer(mosquitto.url, [f"paddock/v1/cars/{car}/#"]) as obs, RecordingDaemon(cfg) as daemon:
        session = daemon.start_recording()
        await until(lambda: len([f for f in obs.frames(car) if f[0].session == session]) > 150, 60, "frames")
        daemon.stop_recording()
        await until(lambda: daemon.spool.pending_records == 0, what="spool drained")
    frames = [r for r, _, _ in obs.frames(car) if r.session == session]
    assert all(f.label is not None for f in frames)
    gaps = [abs(f.steering - f.label.steering) for f in frames if f.label is not None]
    # The car applied the perturbed steering; the label is what the expert wanted for that view.
    assert max(gaps) > 0.1
    assert np.mean(gaps) > 0.03
    assert all(abs(f.label.throttle - f.throttle) < 1e-6 for f in frames if f.label is not None)
    await clear_retained(mosquitto.url, [T.car_status(car), T.model_state(car)])


async def test_off_track_is_reported_and_the_car_put_back(tmp_path: Path) -> None:
    cfg = sim_config(tmp_path, "mqtt://127.0.0.1:9", "sim-off", autopilot="straight")
    async with RecordingDaemon(cfg, pilots={"straight": StraightOn()}) as daemon:
        off = await until(
            lambda: [e for e in daemon.local_events if e["type"] == "off_track"], 30, "off track"
        )
        assert 0 < off[0]["progress"] < 50 and off[0]["lap"] == 0
        # the event is sent during the tick, which the harness keeps only once the tick has ended
        await until(lambda: any(t.body is not None and t.body.off_track for t in daemon.ticks), 5, "the tick")
        recovered = await until(
            lambda: [e for e in daemon.local_events if e.get("reason") == "sim: reset to track"],
            30,
            "recovery",
        )
        assert recovered


async def test_paddock_car_run_sim_drives_a_lap(mosquitto: Any, tmp_path: Path) -> None:
    car = "sim-cli"
    argv = [
        sys.executable, "-m", "deploy.cli", "car", "run", "--sim", "--track", "oval", "--car-id", car,
        "--broker", mosquitto.url, "--clock", "lockstep", "--state-dir", str(tmp_path / "state"),
        "--set", "sim.speedup=4", "--set", "loop.start_mode=autopilot", "--set", "loop.autopilot=expert",
    ]  # fmt: skip
    async with Observer(mosquitto.url, [f"paddock/v1/cars/{car}/#"]) as obs:
        log = (tmp_path / "car.log").open("wb")
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
        try:
            laps = await until(lambda: obs.events(car, "lap"), 60, "a lap from the CLI car")
            assert laps[0]["model"] == "expert"
            births = obs.json(T.car_status(car))
            assert "sim:track:oval" in births[0]["capabilities"]
            proc.send_signal(signal.SIGINT)
            assert await asyncio.to_thread(proc.wait, 30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    await clear_retained(mosquitto.url, [T.car_status(car), T.model_state(car)])


@pytest.mark.parametrize("bad", [{"camera": {"kind": "sim"}}, {"sim": {"speedup": 2}}])
def test_sim_config_errors(tmp_path: Path, bad: dict[str, Any]) -> None:
    from edge.config import ConfigError

    with pytest.raises(ConfigError):
        car_config(tmp_path, "mqtt://x", **bad).with_values({})
