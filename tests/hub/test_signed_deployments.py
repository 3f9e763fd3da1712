"""Replay-proof model deployments, attacked over a real broker: a real hub signs and publishes, real
car daemons on the simulator body verify. A captured envelope replayed to roll a car back, the same
envelope sent to a car it was never meant for, an expired one, one signed by an unknown key: each
refused with its reason and a ``model_rejected`` event the hub stores; a newer hub's extra field
and a signed rollback are accepted."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from hub import HubConfig, HubService
from infra.keys import load_or_create_private_key
from schemas.signing import generate_private_key
from schemas.topics import Topics
from tests.edge.harness import RecordingDaemon, until
from tests.edge.modelkit import card, onnx_model, signed_envelope
from tests.hub.conftest import TOKEN, signed_sim_car
from tests.servers.clients import retained_payload

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SIM = {"sim": {"speedup": 2}, "loop": {"hz": 20}, "publish": {"telemetry_hz": 2}}


def car(tmp_path: Path, hub: HubService, car_id: str) -> RecordingDaemon:
    tmp_path.mkdir(exist_ok=True)
    return RecordingDaemon(signed_sim_car(tmp_path, hub, car_id, **SIM))


async def deploy(http: httpx.AsyncClient, version: str, car_id: str) -> None:
    body = {"model": {"name": "pilot", "version": version}, "car": car_id}
    r = await http.post("/deployments", json=body, headers=AUTH)
    assert r.status_code == 201 and r.json()["published"], r.text


def rejections(daemon: RecordingDaemon) -> list[dict[str, Any]]:
    return [e for e in daemon.local_events if e["type"] == "model_rejected"]


async def drives(daemon: RecordingDaemon, ref: str) -> None:
    await until(lambda: daemon.model_ref == ref, 30, f"{daemon.car} driving {ref}")


async def refused(daemon: RecordingDaemon, topic: str, payload: bytes, code: str, pub: Any) -> str:
    before = len(rejections(daemon))
    await asyncio.to_thread(lambda: pub.publish(topic, payload, qos=1, retain=True).wait_for_publish(5))
    await until(lambda: len(rejections(daemon)) > before, 15, f"{daemon.car} refusing ({code})")
    event = rejections(daemon)[-1]
    assert event["code"] == code, event
    return str(event["reason"])


async def stored_rejections(http: httpx.AsyncClient, car_id: str, codes: set[str]) -> list[dict[str, Any]]:
    """The model_rejected events the hub has stored for a car, once they include ``codes``."""
    params = {"type": "model_rejected"}
    for _ in range(100):
        events: list[dict[str, Any]] = (await http.get(f"/cars/{car_id}/events", params=params)).json()
        if codes <= {e.get("code") for e in events}:
            break
        await asyncio.sleep(0.1)
    return events


async def test_replayed_foreign_expired_and_unknown_key_envelopes_are_refused(
    mosquitto: Any, make_config: Callable[..., HubConfig], tmp_path: Path
) -> None:
    import paho.mqtt.client as paho

    attacker = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="attacker")
    attacker.connect("127.0.0.1", mosquitto.port)
    attacker.loop_start()
    async with (
        HubService(make_config(mosquitto.url)) as hub,
        httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http,
    ):
        T: Topics = hub.topics
        for version, steering in (("1", 0.2), ("2", -0.3)):
            files = {"artifact": ("m.onnx", onnx_model(steering=steering))}
            data = {"name": "pilot", "version": version, "card": card().model_dump_json()}
            assert (await http.post("/models", data=data, files=files, headers=AUTH)).status_code == 201
        async with car(tmp_path / "a", hub, "car-a") as a, car(tmp_path / "b", hub, "car-b") as b:
            await until(
                lambda: a.link.connected.is_set() and b.link.connected.is_set(), what="cars connected"
            )
            await deploy(http, "1", "car-a")
            await drives(a, "pilot:1")
            captured = await asyncio.to_thread(retained_payload, mosquitto.url, T.car_model("car-a"))
            assert captured is not None
            await deploy(http, "2", "car-a")
            await drives(a, "pilot:2")
            # the captured envelope of model 1, replayed, would roll car-a back
            reason = await refused(a, T.car_model("car-a"), captured, "replayed", attacker)
            assert "replayed or out-of-date envelope" in reason
            # ...and car-b, which was never sent model 1, will not run it either
            reason = await refused(b, T.car_model("car-b"), captured, "wrong_target", attacker)
            assert "signed for car car-a" in reason and b.model_ref is None
            # signed by the hub's key but expired; signed by a key no car trusts
            key = load_or_create_private_key(hub.config.key_path)
            model = onnx_model(steering=0.45)

            def seq() -> int:  # what the hub itself would sign next for car-a
                return hub.catalog.next_model_sequence("car", "car-a", 0)

            stale = signed_envelope(model, key, car="car-a", version="3", ttl_s=-3600, sequence=seq())
            await refused(a, T.car_model("car-a"), stale, "expired", attacker)
            foreign = signed_envelope(model, generate_private_key(), car="car-a", version="3", sequence=seq())
            await refused(a, T.car_model("car-a"), foreign, "unknown_key", attacker)
            assert a.model_ref == "pilot:2"
            state = (await http.get("/cars/car-a", headers=AUTH)).json()["model_state"]
            assert state["active"] == "pilot:2", state
            # the hub stored what the car reported (its events) and still sees model 2 running
            events = await stored_rejections(http, "car-a", {"replayed", "expired", "unknown_key"})
            assert {"replayed", "expired", "unknown_key"} <= {e.get("code") for e in events}, events
            # a newer hub's manifest field is signed like the others; this car ignores it and drives
            newer = signed_envelope(model, key, car="car-a", version="3", sequence=seq(),
                                    extra={"canary": {"percent": 10}, "priority": 2})  # fmt: skip
            await asyncio.to_thread(
                lambda: attacker.publish(T.car_model("car-a"), newer, qos=1, retain=True).wait_for_publish(5)
            )
            await drives(a, "pilot:3")
        # the replay is still refused after a restart (the last sequence is on disk)
        async with car(tmp_path / "a", hub, "car-a") as a:
            await drives(a, "pilot:3")  # booted from its cache
            await until(lambda: a.link.connected.is_set(), what="car-a reconnected")
            await refused(a, T.car_model("car-a"), captured, "replayed", attacker)
            # a rollback the hub signs anew (a higher sequence) is taken, even to an older model
            assert (await http.post("/deployments/car/car-a/rollback", headers=AUTH)).status_code == 200
            await drives(a, "pilot:1")
    attacker.loop_stop()
    attacker.disconnect()
