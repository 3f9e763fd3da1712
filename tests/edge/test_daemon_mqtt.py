"""The car daemon against real brokers (Mosquitto and the embedded amqtt)."""

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge.commands import DriveFreshness
from schemas.messages import CarStatus, ModelState, Telemetry
from schemas.payloads import decode_frame
from schemas.signing import generate_private_key
from tests.edge.bodies import bench_body
from tests.edge.harness import (
    ConstantPilot,
    Observer,
    RecordingDaemon,
    T,
    car_config,
    clear_retained,
    until,
)
from tests.edge.modelkit import onnx_model, signed_envelope

KEY = generate_private_key()
CAR_THREADS = ("control-loop", "recorder", "camera-")


def car_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(CAR_THREADS)]


async def test_presence_commands_telemetry_and_clean_shutdown(
    broker_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    car = "car-presence"
    cfg = car_config(tmp_path, broker_url, car=car)
    body, _ = bench_body()
    topics = [f"paddock/v1/cars/{car}/#"]
    async with Observer(broker_url, topics) as obs:
        async with RecordingDaemon(cfg, body=body, pilots={"const": ConstantPilot(0.1, 0.2)}) as daemon:
            await until(lambda: daemon.link.connected.is_set(), what="connection")
            births = await until(lambda: obs.json(T.car_status(car)), what="birth")
            birth = CarStatus.from_dict(births[0])
            assert birth.state == "online" and birth.bdseq == daemon.link.bdseq
            assert birth.camera is not None and birth.camera.kind == "test_pattern"
            assert "pilot:const" in birth.capabilities

            await obs.publish(T.command(car, "mode"), {"mode": "autopilot", "transaction": "tx-1"})
            await obs.publish(T.command(car, "config"), {"values": {"pilot": "const", "telemetry_hz": 20}})
            await obs.publish(T.command(car, "config"), {"values": {"speed": 3}, "transaction": "tx-3"})
            await obs.publish(T.command(car, "mode"), b"{not json")
            await obs.publish(T.command(car, "rebirth"), {"transaction": "tx-5"})
            responses = await until(
                lambda: (
                    len(obs.json(T.command_response(car, "config"))) == 2
                    and obs.json(T.command_response(car, "mode"))
                    and obs.json(T.command_response(car, "rebirth"))
                    and obs.json(T.command_response(car, "mode"))
                ),
                what="command responses",
            )
            assert responses
            mode = obs.json(T.command_response(car, "mode"))
            assert mode[0] == {**mode[0], "status": "ok", "transaction": "tx-1"}
            assert mode[-1]["status"] == "error" and "invalid" in mode[-1]["error"]
            config = obs.json(T.command_response(car, "config"))
            ok = next(r for r in config if r["status"] == "ok")
            assert ok["data"]["autopilot"] == "const" and ok["data"]["telemetry_hz"] == 20
            bad = next(r for r in config if r["status"] == "error")
            assert bad["transaction"] == "tx-3" and "speed" in bad["error"]
            await until(lambda: len(obs.json(T.car_status(car))) >= 2, what="rebirth")

            # telemetry reports the clipped action the autopilot applied, and loop timing
            await until(lambda: any(t["throttle"] == 0.2 for t in obs.json(T.telemetry(car))), what="driving")
            telemetry = Telemetry.from_dict(obs.json(T.telemetry(car))[-1])
            assert telemetry.mode == "autopilot" and telemetry.model == "const"
            assert telemetry.steering == pytest.approx(0.1) and telemetry.loop_hz == 50
            assert telemetry.loop_late_p99_ms is not None and telemetry.missed_ticks is not None
            # preview frames (QoS 0, low rate) while not recording
            frames = await until(lambda: obs.frames(car), what="preview frames")
            record, jpeg, qos = frames[-1]
            assert record.model_extra.get("recorded") is False and jpeg[:2] == b"\xff\xd8"
            assert record.preview is True
            # amqtt delivers at the subscription's QoS, so receivers must read `recorded`, not the QoS
            if request.node.callspec.params["broker_url"] == "mosquitto":
                assert qos == 0
            assert car_threads()
            bdseq = daemon.link.bdseq
        # clean shutdown: the car publishes its own death (same bdseq) and leaves no threads
        deaths = await until(
            lambda: [s for s in obs.json(T.car_status(car)) if s["state"] == "offline"], what="death"
        )
        assert deaths[-1]["bdseq"] == bdseq
        assert not car_threads()
        states = obs.json(T.model_state(car))
        assert states and ModelState.from_dict(states[0]).active is None
    # presence is retained: a late subscriber learns the car is offline
    async with Observer(broker_url, [T.car_status(car)], identifier="late") as late:
        retained = await until(lambda: late.messages.get(T.car_status(car)), what="retained status")
        assert retained[0].retain and CarStatus.from_json(retained[0].payload).state == "offline"  # type: ignore[arg-type]
    await clear_retained(broker_url, [T.car_status(car), T.model_state(car)])


async def test_deadman_and_estop_stop_the_car(broker_url: str, tmp_path: Path) -> None:
    url = broker_url
    car = "car-estop"
    cfg = car_config(tmp_path, url, car=car, loop={"deadman_ms": 250})
    body, _ = bench_body()
    async with (
        Observer(url, [f"paddock/v1/cars/{car}/#"]) as obs,
        RecordingDaemon(cfg, body=body, pilots={"const": ConstantPilot(0.0, 0.5)}) as daemon,
    ):
        await until(lambda: daemon.link.connected.is_set())
        # manual: drive commands at 20 Hz, then silence
        for _ in range(10):
            await obs.publish(T.command(car, "drive"), {"steering": -0.3, "throttle": 0.4}, qos=0)
            await asyncio.sleep(0.05)
        t_last = time.monotonic_ns()
        await until(lambda: daemon.ticks[-1].t_ns > t_last + 400e6, what="ticks after the deadman")
        during = [r for r in daemon.ticks if t_last - 300e6 < r.t_ns < t_last]
        assert during and all(
            r.throttle == pytest.approx(0.4) and r.steering == pytest.approx(-0.3) for r in during
        )
        late = [r for r in daemon.ticks if r.t_ns > t_last + 300e6]
        assert late and all(r.throttle == 0.0 and r.reason == "deadman" for r in late)
        events = await until(lambda: obs.events(car, "intervention"), what="deadman event")
        assert "deadman" in events[0]["reason"]

        # autopilot, then the fleet e-stop: the very next tick is stopped
        daemon.configure({"pilot": "const"})
        await until(lambda: daemon.ticks[-1].throttle == 0.5, what="autopilot")
        await obs.publish(T.fleet_estop(), {"active": True, "reason": "marshal"}, retain=True)
        estop_events = await until(
            lambda: [e for e in daemon.local_events if e["type"] == "estop"], what="estop seen"
        )
        t_estop = estop_events[0]["ts"]
        await until(lambda: daemon.ticks[-1].estop and len(daemon.ticks) > 5)
        wall_offset = time.time() - time.monotonic_ns() / 1e9
        after = [r for r in daemon.ticks if r.t_ns / 1e9 + wall_offset > t_estop + 0.001]
        assert after and all(r.throttle == 0.0 and r.mode == "stop" for r in after)
        assert (await until(lambda: obs.events(car, "estop")))[0]["active"] is True
        # releasing does not resume driving by itself
        await obs.publish(T.fleet_estop(), {"active": False}, retain=True)
        await until(lambda: not daemon.loop.estop)
        assert daemon.loop.mode == "stop"
    # A car that connects while the retained e-stop is active obeys it on connect, and a car that
    # saw it before a restart holds it from its first tick.
    await clear_retained(url, [T.fleet_estop()])
    async with Observer(url, [T.fleet_estop()]) as obs:
        await obs.publish(T.fleet_estop(), {"active": True, "reason": "race over"}, retain=True)
    cfg2 = car_config(
        tmp_path, url, car="car-estop-2", loop={"start_mode": "autopilot", "autopilot": "const"}
    )
    body2, _ = bench_body()
    async with RecordingDaemon(cfg2, body=body2, pilots={"const": ConstantPilot(0.0, 0.5)}) as d2:
        await until(lambda: d2.link.connected.is_set())
        t_connected = time.monotonic_ns()
        await until(lambda: d2.loop.estop, what="retained estop")
        await asyncio.sleep(0.2)
        assert all(r.throttle == 0.0 for r in d2.ticks if r.t_ns > t_connected + 20e6)
    await clear_retained(url, [T.fleet_estop()])
    body3, _ = bench_body()
    d3 = RecordingDaemon(
        cfg2.with_values({"broker.url": "mqtt://127.0.0.1:9"}),
        body=body3,
        pilots={"const": ConstantPilot(0.0, 0.5)},
    )
    async with d3:
        await asyncio.sleep(0.2)
        assert d3.ticks and all(r.estop and r.throttle == 0.0 for r in d3.ticks)


async def test_drive_commands_older_than_the_deadman_are_not_followed(
    broker_url: str, tmp_path: Path
) -> None:
    """A link that drops for less than the keepalive delivers the joystick's queued commands at
    once when it returns: the car must not drive on them. The sender's clock is 100 s off."""
    car = "car-stale"
    cfg = car_config(tmp_path, broker_url, car=car, loop={"deadman_ms": 250})
    body, _ = bench_body()
    skew = -100.0
    async with (
        Observer(broker_url, [f"paddock/v1/cars/{car}/#"]) as obs,
        RecordingDaemon(cfg, body=body) as daemon,
    ):
        await until(lambda: daemon.link.connected.is_set())
        for _ in range(10):  # on time: followed
            await obs.publish(
                T.command(car, "drive"), {"steering": 0.2, "throttle": 0.4, "ts": time.time() + skew}
            )
            await asyncio.sleep(0.05)
        await until(lambda: daemon.ticks[-1].throttle == pytest.approx(0.4), what="fresh commands followed")
        t_burst = time.monotonic_ns()
        sent = time.time() + skew - 1.5
        for i in range(10):  # a backlog sent over the last 1.5 s, arriving together
            payload = {"steering": 0.9, "throttle": 0.9, "ts": sent + i * 0.1, "transaction": f"b{i}"}
            await obs.publish(T.command(car, "drive"), payload)
        responses = await until(
            lambda: (
                [r for r in obs.json(T.command_response(car, "drive")) if r.get("transaction")][9:]
                and [r for r in obs.json(T.command_response(car, "drive")) if r.get("transaction")]
            ),
            what="the backlog's responses",
        )
        assert all(r["status"] == "ok" and r["data"]["stale"] for r in responses)
        await asyncio.sleep(0.2)
        after = [r for r in daemon.ticks if r.t_ns > t_burst]
        assert after and all(r.throttle != pytest.approx(0.9) for r in after)
        assert daemon.commands.drive_freshness.stale == 10


def test_drive_freshness_follows_the_fastest_delay_in_its_window() -> None:
    fresh = DriveFreshness(window_s=5.0)
    assert fresh.fresh(None, 0.25, now=0.0)
    assert all(fresh.fresh(t - 50.003, 0.25, now=t) for t in (1.0, 1.05, 1.1))  # clock 50 s off
    assert fresh.fresh(1.2 - 50.2, 0.25, now=1.2)  # 0.2 s late: within the deadman
    assert not fresh.fresh(3.0 - 50.5, 0.25, now=3.0)  # 0.5 s late
    assert fresh.fresh(20.0 - 50.5, 0.25, now=20.0)  # the old reference has left the window
    assert fresh.stale == 1


async def test_broker_restart_while_recording_loses_no_frame(mosquitto_factory: Any, tmp_path: Path) -> None:
    broker = mosquitto_factory()
    broker.start()
    car = "car-rec"
    cfg = car_config(tmp_path, broker.url, car=car, recorder={"inflight": 16})
    body, _ = bench_body()
    async with Observer(
        broker.url, [T.frames(car), T.events(car)], identifier="hub-ingest", persistent=True
    ) as obs:
        async with RecordingDaemon(cfg, body=body, pilots={"const": ConstantPilot(0.25, 0.3)}) as daemon:
            daemon.configure({"pilot": "const"})
            await until(lambda: daemon.link.connected.is_set())
            session = daemon.start_recording()
            await asyncio.sleep(1.0)
            broker.stop()  # SIGTERM by PID: the car spools while the broker is away
            await until(lambda: not daemon.link.connected.is_set(), what="disconnect")
            await asyncio.sleep(1.0)
            assert daemon.spool.pending_records > 20
            broker.start()  # same port, same persistence directory
            await until(lambda: daemon.link.connected.is_set(), what="reconnect")
            await asyncio.sleep(0.5)
            _, frames = daemon.stop_recording()
            await until(lambda: daemon.spool.pending_records == 0, what="spool drained")
        recorded = [(r, q) for r, _, q in obs.frames(car) if r.session == session]
        seqs = sorted({r.seq for r, _ in recorded})
        assert len(seqs) == frames > 100
        assert seqs == list(range(seqs[0], seqs[0] + frames))  # every seq, no gap
        assert all(q == 1 for _, q in recorded)
        assert all(r.steering == 0.25 and r.throttle == 0.3 and r.mode == "autopilot" for r, _ in recorded)
        assert all(r.model == "const" and r.model_extra["recorded"] is True for r, _ in recorded)
        stopped = obs.events(car, "recording_stopped")
        assert stopped and stopped[-1]["frames"] == frames
        assert daemon.recorder.queue.dropped == 0


async def test_recording_stopped_follows_the_sessions_last_frame(broker_url: str, tmp_path: Path) -> None:
    """The hub closes a session when `recording_stopped` arrives: it must come after every frame."""
    car = "car-order"
    # Large frames make JPEG encoding slow, so frames are still queued when recording stops.
    cfg = car_config(
        tmp_path, broker_url, car=car, camera={"kind": "test_pattern", "width": 1280, "height": 960},
        recorder={"inflight": 2},
    )  # fmt: skip
    async with Observer(broker_url, [T.frames(car), T.events(car)], identifier="order-obs") as obs:
        async with RecordingDaemon(cfg, pilots={"const": ConstantPilot(0.0, 0.2)}) as daemon:
            daemon.configure({"pilot": "const"})
            await until(lambda: daemon.link.connected.is_set())
            session = daemon.start_recording()
            await asyncio.sleep(1.0)
            _, frames = daemon.stop_recording()
            await until(lambda: obs.events(car, "recording_stopped"), 30, "recording_stopped")
        order = [str(m.topic) for m in obs.arrivals]
        stop_at = next(
            i for i, m in enumerate(obs.arrivals)
            if str(m.topic) == T.events(car) and json.loads(m.payload)["type"] == "recording_stopped"  # type: ignore[arg-type]
        )  # fmt: skip
        session_frames = [
            i for i, m in enumerate(obs.arrivals)
            if order[i] == T.frames(car) and decode_frame(m.payload)[0].session == session  # type: ignore[arg-type]
        ]  # fmt: skip
        assert frames > 5
        assert len(session_frames) == frames
        assert max(session_frames) < stop_at


async def test_a_full_spool_stops_recording_with_an_event(tmp_path: Path) -> None:
    # No broker at all: nothing drains, so the spool fills up.
    cfg = car_config(tmp_path, "mqtt://127.0.0.1:9", car="car-full", recorder={"max_spool_mb": 0.15})
    body, _ = bench_body()
    async with RecordingDaemon(cfg, body=body) as daemon:
        daemon.start_recording("full-test")
        stopped = await until(
            lambda: [e for e in daemon.local_events if e["type"] == "recording_stopped"], what="stop event"
        )
        assert "spool full" in stopped[0]["reason"] and stopped[0]["session"] == "full-test"
        assert not daemon.recorder.recording
        assert daemon.spool.pending_records == stopped[0]["frames"] - daemon.recorder.dropped_full
    # what was spooled stays on disk for the next start
    assert list((tmp_path / "state-car-full" / "spool").glob("*.seg"))


async def _swap_and_rejections(url: str, tmp_path: Path, car: str, broken: dict[str, bytes]) -> None:
    cfg = car_config(tmp_path, url, KEY, car=car, loop={"start_mode": "autopilot"})
    body, _ = bench_body()
    async with (
        Observer(url, [f"paddock/v1/cars/{car}/#"]) as obs,
        RecordingDaemon(cfg, body=body) as daemon,
    ):
        await until(lambda: daemon.link.connected.is_set())
        good = signed_envelope(
            onnx_model(steering=0.35, throttle=0.3), KEY, car=car, sequence=1, name="pilot", version="good"
        )
        await obs.publish(T.car_model(car), good, retain=True)
        swapped = await until(lambda: obs.events(car, "model_swapped"), what="model_swapped")
        assert swapped[0]["name"] == "pilot" and swapped[0]["version"] == "good"
        assert swapped[0]["swap_ms"] >= swapped[0]["load_ms"] > 0
        await until(lambda: daemon.ticks[-1].steering == pytest.approx(0.35), what="driving the model")
        for i, (name, payload) in enumerate(broken.items()):
            await obs.publish(T.car_model(car), payload, retain=True)
            rejected = await until(lambda n=i: len(obs.events(car, "model_rejected")) > n, what=name)
            assert rejected
        rejected = obs.events(car, "model_rejected")
        reasons = {name: e["reason"] for name, e in zip(broken, rejected, strict=True)}
        # the car kept driving the good model through all of it
        await asyncio.sleep(0.1)
        assert daemon.models.active is not None and daemon.models.active.version == "good"
        assert daemon.ticks[-1].steering == pytest.approx(0.35) and daemon.ticks[
            -1
        ].throttle == pytest.approx(0.3)
        states = [ModelState.from_dict(s) for s in obs.json(T.model_state(car))]
        assert states[-1].active == "pilot:good" and states[-1].last_error == rejected[-1]["reason"]
    await clear_retained(url, [T.car_model(car), T.model_state(car), T.car_status(car)])
    return reasons  # type: ignore[return-value]


def broken_models(car: str) -> dict[str, bytes]:
    good = onnx_model(steering=0.1)
    env = signed_envelope(good, KEY, car=car, version="tampered")
    return {
        "tampered": env[:-20] + bytes(b ^ 0xFF for b in env[-20:]),
        "truncated": signed_envelope(good, KEY, car=car, version="truncated")[:-100],
        "unsigned": signed_envelope(good, None, version="unsigned"),
        "wrong-shape": signed_envelope(onnx_model(declared=(1, 3, 60, 80)), KEY, car=car, version="shape"),
        "nan": signed_envelope(onnx_model(nan=True), KEY, car=car, version="nan"),
    }


async def test_bad_models_are_rejected_while_the_car_keeps_driving(mosquitto: Any, tmp_path: Path) -> None:
    reasons: Any = await _swap_and_rejections(
        mosquitto.url, tmp_path, "car-models", broken_models("car-models")
    )
    assert "sha256 does not match" in reasons["tampered"]
    assert "truncated" in reasons["truncated"]
    assert "not signed" in reasons["unsigned"]
    assert "does not match the card" in reasons["wrong-shape"]
    assert "not finite" in reasons["nan"]


async def test_hot_swap_and_rejection_on_the_embedded_broker(amqtt_broker: Any, tmp_path: Path) -> None:
    reasons: Any = await _swap_and_rejections(
        amqtt_broker.url, tmp_path, "car-amqtt", {"nan": broken_models("car-amqtt")["nan"]}
    )
    assert "not finite" in reasons["nan"]


async def test_boot_without_a_broker_drives_the_cached_model(mosquitto: Any, tmp_path: Path) -> None:
    car = "car-cache"
    cfg = car_config(tmp_path, mosquitto.url, KEY, car=car, loop={"start_mode": "autopilot"})
    body, _ = bench_body()
    async with Observer(mosquitto.url, [T.events(car)]) as obs, RecordingDaemon(cfg, body=body) as daemon:
        await until(lambda: daemon.link.connected.is_set())
        await obs.publish(
            T.car_model(car),
            signed_envelope(onnx_model(steering=-0.45), KEY, car=car, version="7"),
            retain=True,
        )
        await until(lambda: obs.events(car, "model_swapped"))
    await clear_retained(mosquitto.url, [T.car_model(car), T.model_state(car), T.car_status(car)])
    offline = cfg.with_values({"broker.url": "mqtt://127.0.0.1:9"})  # nothing listens there
    body2, _ = bench_body()
    async with RecordingDaemon(offline, body=body2) as daemon:
        await until(lambda: len(daemon.ticks) > 10)
        assert not daemon.link.connected.is_set()
        assert daemon.model_ref == "pilot:7"
        tick = daemon.ticks[-1]
        assert (tick.mode, tick.pilot, tick.steering) == ("autopilot", "pilot:7", pytest.approx(-0.45))


async def test_sensors_reach_telemetry_and_recorded_frames(tmp_path: Path) -> None:
    import struct

    from edge.spool import ForwardSpool
    from firmware.car_body import Body
    from firmware.sensors import CpuTemperature, Mpu6050Imu, SensorSuite
    from schemas.payloads import decode_frame
    from tests.firmware.test_sensors import RegisterBus

    temp = tmp_path / "temp"
    temp.write_text("47500")
    bus = RegisterBus(
        {0x68: {0x3B + i: b for i, b in enumerate(struct.pack(">7h", 0, 0, 16384, 0, 0, 0, 131))}}
    )
    base, _ = bench_body()
    body = Body(base.camera, base.actuators, SensorSuite([CpuTemperature(temp), Mpu6050Imu(bus)]))
    cfg = car_config(tmp_path, "mqtt://127.0.0.1:9", car="car-sensors")
    async with RecordingDaemon(cfg, body=body) as daemon:
        assert "sensor:mpu6050" in body.capabilities
        await until(lambda: daemon.telemetry().cpu_temp_c == 47.5, what="cpu temperature")
        daemon.start_recording("with-imu")
        await until(lambda: daemon.spool.pending_records > 5, what="recorded frames")
        daemon.stop_recording()
    spool = ForwardSpool(cfg.spool_dir, max_bytes=1 << 30)
    records = [decode_frame(r.data)[0] for r in spool.read(spool.head, max_records=10)]
    spool.close()
    assert records and all(r.session == "with-imu" and r.model_extra["recorded"] is True for r in records)
    imu = records[-1].model_extra["imu"]
    assert imu == pytest.approx({"ax": 0, "ay": 0, "az": 9.8066, "gx": 0, "gy": 0, "gz": 1}, abs=1e-3)


async def test_every_malformed_command_gets_an_error_response(mosquitto: Any, tmp_path: Path) -> None:
    """Deep nesting, a non-string transaction, binary junk: each is answered, and the car still obeys."""
    url = str(mosquitto.url)
    car = "car-hostile"
    cfg = car_config(tmp_path, url, car=car)
    body, _ = bench_body()
    hostile = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"transaction": "tx-deep", "mode": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"transaction": {"a": 1}, "mode": "stop"}',
        b'{"transaction": "' + b"x" * 5000 + b'", "mode": "stop"}',
        b"\xff\xfe\x00junk",
        b"",
    ]
    async with (
        Observer(url, [f"paddock/v1/cars/{car}/#"]) as obs,
        RecordingDaemon(cfg, body=body) as daemon,
    ):
        await until(lambda: daemon.link.connected.is_set(), what="connection")
        for payload in hostile:
            await obs.publish(T.command(car, "mode"), payload)
        await obs.publish(T.command(car, "mode"), {"mode": "stop", "transaction": "tx-after"})
        answers = await until(
            lambda: (r := obs.json(T.command_response(car, "mode"))) and len(r) == len(hostile) + 1 and r,
            what="an answer to every command",
        )
        ok = [a for a in answers if a["status"] == "ok"]
        assert len(ok) == 1 and ok[0]["transaction"] == "tx-after"
