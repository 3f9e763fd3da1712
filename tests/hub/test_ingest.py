"""Ingest through real brokers (Mosquitto and amqtt): frames become shards, gaps and malformed
messages are counted, births and deaths follow the bdseq rules."""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hub import HubConfig, HubService
from schemas.envelope import encode
from schemas.messages import CarStatus, FrameRecord, LapEvent
from tests.hub.conftest import eventually, read_session
from tests.hub.fakecar import FakeCar
from tests.servers.clients import retained_payload


def _store_root(hub: HubService):  # type: ignore[no-untyped-def]
    return hub.config.data_dir / "store"


async def test_frames_become_shards_and_gaps_are_counted(
    broker_url: str, make_config: Callable[..., HubConfig]
) -> None:
    cfg = make_config(broker_url, shards={"target_mb": 0.2})  # several shards per session
    async with HubService(cfg) as hub:
        car = FakeCar(broker_url, "car-1", prefix=cfg.topic_prefix).connect()
        try:
            car.start_recording("s1")
            sent = await asyncio.to_thread(car.record, "s1", 300, skip={10, 11, 50})
            car.stop_recording("s1", frames=len(sent))
            sealed = await hub.wait_sealed("car-1", "s1", timeout=20)
            row = hub.catalog.get_session("car-1", "s1")
            assert row is not None and sealed.frame_count == 297
        finally:
            car.close()
        manifest, samples = read_session(_store_root(hub), "car-1", "s1")
        assert [s.seq for s in samples] == sent
        assert manifest["frame_count"] == 297 == row["frame_count"]
        assert (manifest["seq_first"], manifest["seq_last"]) == (0, 299)
        assert manifest["gaps"] == [[10, 11], [50, 50]]
        assert manifest["state"] == "sealed"
        assert len(manifest["shards"]) > 1
        assert samples[5].jpeg == car.jpeg
        assert samples[5].record["steering"] == ((5 % 21) - 10) / 10
        stats = hub.ingest_stats()
        c = stats.cars["car-1"]
        assert (c.frames_persisted, c.frames_sealed, c.missing, c.gaps) == (297, 297, 3, 2)
        assert stats.malformed == 0 and c.duplicates == 0


async def test_malformed_messages_are_counted_and_never_stop_ingest(
    broker_url: str, make_config: Callable[..., HubConfig]
) -> None:
    cfg = make_config(broker_url)
    async with HubService(cfg) as hub:
        car = FakeCar(broker_url, "car-2", prefix=cfg.topic_prefix).connect()
        t = car.topics
        good = car.frame_bytes("s2", 0)
        try:
            bad = {
                "bad magic": b"JUNK" + good[4:],
                "truncated": good[:20],
                "car mismatch": car.frame_bytes("s2", 1).replace(b'"car":"car-2"', b'"car":"car-9"'),
                "not a jpeg": encode(
                    FrameRecord(
                        car="car-2",
                        session="s2",
                        seq=2,
                        t_capture_ns=1,
                        steering=0,
                        throttle=0,
                        mode="manual",
                    ).to_dict(),
                    b"PNG....",
                ),
                "invalid frame record": encode({"car": "car-2", "session": "../x", "seq": -1}, car.jpeg),
            }
            for payload in bad.values():
                car.publish(t.frames("car-2"), payload, qos=1)
            car.publish(t.telemetry("car-2"), b'{"seq": "x"}', qos=0)
            car.publish(t.events("car-2"), b'{"type": "warp"}', qos=1)
            car.publish(t.car_status("car-2"), b"not json", qos=1)
            car.publish(f"{cfg.topic_prefix}/v1/cars/Not_A_Car/frames", good, qos=1)
            sent = await asyncio.to_thread(car.record, "s2", 50)
            car.stop_recording("s2")
            # malformed messages are acknowledged too, or the broker would resend them forever
            await eventually(
                lambda: hub.ingest.acks.outstanding == 0, what="every QoS 1 message acknowledged"
            )
            await hub.wait_sealed("car-2", "s2")
        finally:
            car.close()
        _, samples = read_session(_store_root(hub), "car-2", "s2")
        assert [s.seq for s in samples] == sent
        stats = hub.ingest_stats()
        reasons = stats.malformed_by_reason
        assert hub.spool.pending == 0
        for label in bad:
            assert reasons.get(f"frame: {label}") == 1, (label, reasons)
        assert reasons.get("topic: not a paddock topic") == 1
        assert sum(n for r, n in reasons.items() if r.startswith("telemetry")) == 1
        assert sum(n for r, n in reasons.items() if r.startswith("events")) == 1
        assert sum(n for r, n in reasons.items() if r.startswith("car_status")) == 1
        assert stats.cars["car-2"].malformed == 8


async def test_births_deaths_and_a_stale_death(
    broker_url: str, make_config: Callable[..., HubConfig]
) -> None:
    cfg = make_config(broker_url)
    async with HubService(cfg) as hub:
        car = FakeCar(broker_url, "car-3", prefix=cfg.topic_prefix, bdseq=5).connect()
        try:
            await eventually(
                lambda: (c := hub.catalog.get_car("car-3")) and c["state"] == "online", what="birth"
            )
            car.death(bdseq=4)  # a late will from an older connection
            await eventually(lambda: hub.catalog.get_car("car-3")["stale_deaths"] == 1, what="stale death")  # type: ignore[index]
            assert hub.catalog.get_car("car-3")["state"] == "online"  # type: ignore[index]
            car.death()
            await eventually(lambda: hub.catalog.get_car("car-3")["state"] == "offline", what="death")  # type: ignore[index]
            car.bdseq = 6
            car.birth(mode="autopilot", model="pilot:3")
            c = await eventually(
                lambda: (c := hub.catalog.get_car("car-3")) and c["bdseq"] == 6 and c, what="rebirth"
            )
            assert c["state"] == "online" and c["status"]["model"] == "pilot:3"
            assert hub.counters.stale_deaths == 1
        finally:
            car.close(death=False)


async def test_last_will_marks_a_vanished_car_offline(
    broker_url: str, make_config: Callable[..., HubConfig]
) -> None:
    cfg = make_config(broker_url)
    async with HubService(cfg) as hub:
        car = FakeCar(broker_url, "car-4", prefix=cfg.topic_prefix, bdseq=2).connect()
        await eventually(lambda: (c := hub.catalog.get_car("car-4")) and c["state"] == "online", what="birth")
        car.client.socket().close()  # vanish without DISCONNECT: the broker publishes the will
        car.client.loop_stop()
        await eventually(lambda: hub.catalog.get_car("car-4")["state"] == "offline", timeout=60, what="will")  # type: ignore[index]
        assert hub.catalog.get_car("car-4")["bdseq"] == 2  # type: ignore[index]


async def test_resent_frames_are_stored_once(broker_url: str, make_config: Callable[..., HubConfig]) -> None:
    cfg = make_config(broker_url)
    async with HubService(cfg) as hub:
        car = FakeCar(broker_url, "car-5", prefix=cfg.topic_prefix).connect()
        try:
            for seq in [0, 1, 2, 1, 2, 3, 0, 4]:  # a car resending after a reconnect
                car.publish(car.topics.frames("car-5"), car.frame_bytes("s5", seq), qos=1)
            car.stop_recording("s5")
            await hub.wait_sealed("car-5", "s5")
        finally:
            car.close()
        manifest, samples = read_session(_store_root(hub), "car-5", "s5")
        assert [s.seq for s in samples] == [0, 1, 2, 3, 4]
        assert manifest["gaps"] == []
        assert hub.ingest_stats().cars["car-5"].duplicates == 3


async def test_frames_recorded_while_the_hub_is_stopped_arrive_when_it_is_back(
    broker_url: str, make_config: Callable[..., HubConfig]
) -> None:
    """The hub's session is persistent: a hub stopped (an upgrade, a restart) misses no frame."""
    cfg = make_config(broker_url)
    car = FakeCar(broker_url, "car-8", prefix=cfg.topic_prefix).connect()
    try:
        async with HubService(cfg):
            car.start_recording("s8")
            sent = await asyncio.to_thread(car.record, "s8", 100)
        sent += await asyncio.to_thread(car.record, "s8", 200)  # nobody listening now
        car.stop_recording("s8", frames=len(sent))
        async with HubService(cfg) as hub:

            def all_sealed() -> bool:
                row = hub.catalog.get_session("car-8", "s8")
                return row is not None and row["state"] == "sealed" and row["frame_count"] == 300

            await eventually(all_sealed, 20, "the frames sent while the hub was stopped, sealed")
            await hub.wait_sealed("car-8", "s8")
    finally:
        car.close()
    manifest, samples = read_session(_store_root(hub), "car-8", "s8")
    assert [s.seq for s in samples] == sent == list(range(300))
    assert manifest["gaps"] == []


async def test_preview_telemetry_and_events(broker_url: str, make_config: Callable[..., HubConfig]) -> None:
    import httpx

    cfg = make_config(broker_url)
    async with HubService(cfg) as hub:
        car = FakeCar(broker_url, "car-6", prefix=cfg.topic_prefix).connect()
        try:
            for i in range(5):
                car.frame("preview", qos=0)
                car.telemetry(mode="autopilot", model="pilot:1", steering=i / 10, inference_ms=3.0 + i)
            car.event(LapEvent(lap=1, lap_time_s=12.5, ts=time.time(), model="pilot:1"))
            await eventually(
                lambda: hub.ingest_stats().cars.get("car-6") and hub.ingest_stats().cars["car-6"].events == 1
            )
            await eventually(
                lambda: hub.sqlite_sink and hub.sqlite_sink.count("telemetry") == 5, what="telemetry rows"
            )
            await eventually(
                lambda: hub.sqlite_sink and hub.sqlite_sink.count("events") == 1, what="event rows"
            )
            async with httpx.AsyncClient(base_url=hub.api_url) as http:
                r = await http.get("/cars/car-6/preview")
                assert r.status_code == 200 and r.content == car.jpeg
                r = await http.get("/cars/car-6/telemetry", params={"limit": 3})
                assert [p["steering"] for p in r.json()] == [0.2, 0.3, 0.4]
                r = await http.get("/cars/car-6/events")
                assert r.json()[0]["type"] == "lap" and r.json()[0]["lap_time_s"] == 12.5
                r = await http.get("/cars/car-6")
                assert r.json()["telemetry"]["inference_ms"] == 7.0
            await eventually(
                lambda: hub.ingest.acks.outstanding == 0, what="every QoS 1 message acknowledged"
            )
        finally:
            car.close()
        stats = hub.ingest_stats().cars["car-6"]
        assert stats.preview_frames == 5 and stats.frames_persisted == 0  # previews are not recorded
        assert hub.catalog.list_sessions("car-6")[1] == 0


async def test_hub_status_is_retained_with_a_will(
    broker_url: str, make_config: Callable[..., HubConfig]
) -> None:
    cfg = make_config(broker_url)
    async with HubService(cfg) as hub:
        data = await asyncio.to_thread(retained_payload, broker_url, hub.topics.hub_status())
        assert data is not None
        status = CarStatus.model_validate_json(data.replace(b'"online"', b'"online","bdseq":0'))
        assert status.state == "online"
        assert b'"api_url":"' + hub.api_url.encode() in data
    data = await asyncio.to_thread(retained_payload, broker_url, hub.topics.hub_status())
    assert data is not None and b'"offline"' in data


async def test_qos0_frames_without_a_preview_flag_are_previews_on_mosquitto(
    mosquitto, make_config: Callable[..., HubConfig]
) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(mosquitto.url)
    async with HubService(cfg) as hub:
        car = FakeCar(mosquitto.url, "car-7", prefix=cfg.topic_prefix).connect()
        try:
            for seq in range(3):
                car.publish(car.topics.frames("car-7"), car.frame_bytes("p", seq), qos=0)
            await eventually(
                lambda: (c := hub.ingest_stats().cars.get("car-7")) and c.preview_frames == 3, what="previews"
            )
        finally:
            car.close()
        assert hub.ingest_stats().cars["car-7"].frames_received == 0


async def test_broker_restart_the_hub_reconnects_and_republishes_models(
    mosquitto_factory, make_config: Callable[..., HubConfig]
) -> None:  # type: ignore[no-untyped-def]
    """A broker replaced by a fresh one (nothing kept): the hub reconnects, keeps recording, and
    publishes its deployments again so cars still find their model retained."""
    import httpx

    from schemas.payloads import decode_model
    from tests.hub.conftest import TOKEN
    from tests.hub.test_api import CARD

    broker = mosquitto_factory().start()
    url = broker.url
    cfg = make_config(url, mqtt={"reconnect_min_s": 1, "reconnect_max_s": 1})
    async with HubService(cfg) as hub, httpx.AsyncClient(base_url=hub.api_url) as http:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = await http.post(
            "/models",
            data={"name": "p", "card": CARD.model_dump_json()},
            files={"artifact": ("m.onnx", b"onnx-bytes")},
            headers=auth,
        )
        assert r.status_code == 201
        r = await http.post(
            "/deployments", json={"model": {"name": "p", "version": "1"}, "car": "car-r"}, headers=auth
        )
        assert r.json()["published"]
        car = FakeCar(url, "car-r", prefix=cfg.topic_prefix).connect()
        first = await asyncio.to_thread(car.record, "s", 100)
        await eventually(lambda: hub.ingest_stats().cars["car-r"].frames_persisted == 100, what="first half")
        car.close(death=False)
        broker.stop()
        await eventually(lambda: not hub.ingest.connected.is_set(), what="hub noticed")
        broker = mosquitto_factory(port=broker.port).start()  # a fresh broker: no sessions, no retained
        await eventually(lambda: hub.ingest.connected.is_set(), timeout=30, what="hub reconnected")
        assert hub.ingest.connections == 2
        data = await eventually(
            lambda: retained_payload(url, hub.topics.car_model("car-r"), 0.5), what="model republished"
        )
        assert decode_model(data)[1] == b"onnx-bytes"
        car = FakeCar(url, "car-r", prefix=cfg.topic_prefix).connect()
        car.seq = 100
        second = await asyncio.to_thread(car.record, "s", 100)
        car.stop_recording("s")
        await eventually(
            lambda: (r := hub.catalog.get_session("car-r", "s")) and r["frame_count"] == 200,
            what="all sealed",
        )
        car.close()
    _, samples = read_session(_store_root(hub), "car-r", "s")
    assert [s.seq for s in samples] == first + second == list(range(200))


async def test_a_killed_sealer_process_is_replaced_and_nothing_is_lost(
    mosquitto, make_config: Callable[..., HubConfig]
) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal

    cfg = make_config(mosquitto.url, shards={"target_mb": 0.05})
    async with HubService(cfg) as hub:
        car = FakeCar(mosquitto.url, "car-k", prefix=cfg.topic_prefix).connect()
        first = await asyncio.to_thread(car.record, "s", 150)
        pid = hub.sealer.pid  # type: ignore[union-attr]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await eventually(
            lambda: hub.sealer.restarts == 1 and hub.sealer.alive, timeout=30, what="a new sealer"
        )  # type: ignore[union-attr]
        assert hub.sealer.pid != pid  # type: ignore[union-attr]
        second = await asyncio.to_thread(car.record, "s", 150)
        car.stop_recording("s")
        manifest = await hub.wait_sealed("car-k", "s")
        car.close()
        assert manifest.frame_count == 300 and manifest.gaps == []
    _, samples = read_session(_store_root(hub), "car-k", "s")
    assert [s.seq for s in samples] == first + second == list(range(300))


async def test_sealing_in_a_thread(mosquitto, make_config: Callable[..., HubConfig]) -> None:  # type: ignore[no-untyped-def]
    from hub.storage.sealer import Sealer

    cfg = make_config(mosquitto.url, shards={"sealer": "thread", "busy_share": 0.5})
    async with HubService(cfg) as hub:
        assert isinstance(hub.sealer, Sealer)
        car = FakeCar(mosquitto.url, "car-t", prefix=cfg.topic_prefix).connect()
        sent = await asyncio.to_thread(car.record, "s", 200, skip={3})
        car.stop_recording("s")
        manifest = await hub.wait_sealed("car-t", "s")
        car.close()
        assert manifest.gaps == [(3, 3)] and hub.ingest_stats().cars["car-t"].frames_sealed == 199
    _, samples = read_session(_store_root(hub), "car-t", "s")
    assert [s.seq for s in samples] == sent


async def test_the_sealer_process_starts_from_a_folder_holding_a_hub_directory(
    mosquitto, make_config: Callable[..., HubConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """``python -m`` puts the working directory first on sys.path: a data dir ``hub/`` there (with the
    spool in ``hub/spool``) must not be taken for the hub package. With an editable install a plain
    folder shadows it; the ``__init__.py`` makes it shadow under any install, as here."""
    data = tmp_path / "hub"
    (data / "spool").mkdir(parents=True)
    (data / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    cfg = make_config(mosquitto.url, data_dir=Path("hub"), shards={"sealer": "process"})
    async with HubService(cfg) as hub:
        assert hub.sealer.alive and hub.health()["store"]["sealer_alive"]
        car = FakeCar(mosquitto.url, "car-cwd", prefix=cfg.topic_prefix).connect()
        await asyncio.to_thread(car.record, "s", 20)
        car.stop_recording("s")
        manifest = await hub.wait_sealed("car-cwd", "s")
        car.close()
    assert manifest.frame_count == 20
