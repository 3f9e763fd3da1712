"""Detector deployments end to end: a real hub and Mosquitto and a simulated car daemon. A classifier
registered on the hub goes by `POST /deployments` to the car's detector topic, signed as a pilot is;
the car hot-swaps it into its detector slot, `GET /cars/{car}` and `/metrics` show it, the pilot
keeps its model,
a rollback acts on the detector slot alone, and each slot's envelope is refreshed before it expires."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest

from hub import HubConfig, HubService
from schemas.model_card import ModelCard
from tests.edge.detector_kit import tiny_detector
from tests.edge.harness import RecordingDaemon
from tests.edge.modelkit import onnx_model
from tests.edge.trained import CARD
from tests.hub.conftest import TOKEN, eventually, register_model, signed_sim_car

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAR = "sim-det"


def retrained(model: bytes) -> bytes:
    """The same network with another doc string: a second version (another sha256)."""
    proto = onnx.load_from_string(model)
    proto.doc_string = "retrained"
    return proto.SerializeToString()


async def register(http: httpx.AsyncClient, name: str, model: bytes, card: ModelCard) -> str:
    return await register_model(http, name, model, card.model_dump_json(), {"metrics": {}})


def sim_car(tmp_path: Path, hub: HubService) -> Any:
    return signed_sim_car(tmp_path, hub, CAR, loop={"start_mode": "stop"}, publish={"telemetry_hz": 5})


@pytest.fixture
async def hub(mosquitto: Any, make_config: Callable[..., HubConfig]) -> AsyncIterator[HubService]:
    async with HubService(make_config(mosquitto.url)) as h:
        yield h


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:  # noqa: ASYNC109
    return await eventually(check, timeout, what, interval=0.3)


async def test_a_classifier_deploys_into_the_detector_slot_and_rolls_back_alone(
    hub: HubService, tmp_path: Path
) -> None:
    detector, detector_card = await asyncio.to_thread(tiny_detector)
    async with httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
        pilot = await register(http, "pilot", onnx_model(width=80, height=60, throttle=0.0), CARD)
        d1 = await register(http, "detector", detector, detector_card)
        d2 = await register(http, "detector", retrained(detector), detector_card)

        async def deploy(name: str, version: str) -> dict[str, Any]:
            body = {"model": {"name": name, "version": version}, "car": CAR}
            r = await http.post("/deployments", json=body, headers=AUTH)
            assert r.status_code == 201, r.text
            out: dict[str, Any] = r.json()
            assert out["published"] is True
            return out

        async def on(pilot_ref: str, detector_ref: str) -> bool:
            row = (await http.get(f"/cars/{CAR}", headers=AUTH)).json()
            states = (row.get("model_state") or {}), (row.get("detector_state") or {})
            return states[0].get("active") == pilot_ref and states[1].get("active") == detector_ref

        out = await deploy("pilot", pilot)
        assert out["slot"] == "pilot" and out["topic"].endswith(f"/cars/{CAR}/model")
        async with RecordingDaemon(sim_car(tmp_path, hub)):
            out = await deploy("detector", d1)
            assert out["slot"] == "detector" and out["topic"].endswith(f"/cars/{CAR}/detector")
            await until(lambda: on(f"pilot:{pilot}", f"detector:{d1}"), "the detector beside the pilot")
            await deploy("detector", d2)
            await until(lambda: on(f"pilot:{pilot}", f"detector:{d2}"), "the second detector")
            row = (await http.get(f"/cars/{CAR}", headers=AUTH)).json()
            assert row["deployment"] == {"name": "pilot", "version": pilot}
            assert row["detector_deployment"] == {"name": "detector", "version": d2}

            async def metrics() -> str | None:
                text = (await http.get("/metrics")).text
                return (
                    text
                    if f'paddock_fleet_detector{{car="{CAR}",model="detector:{d2}"}} 1.0' in text
                    else None
                )

            text = await until(metrics, "the detector in /metrics")
            assert f'paddock_fleet_detector_inference_ms{{car="{CAR}",model="detector:{d2}"}}' in text

            # A rollback of the detector slot brings the first detector back; the pilot's is untouched.
            url = f"/deployments/car/{CAR}"
            r = await http.post(f"{url}/rollback", params={"slot": "detector"}, headers=AUTH)
            assert r.status_code == 200, r.text
            assert r.json()["current"] == {"name": "detector", "version": d1}
            await until(lambda: on(f"pilot:{pilot}", f"detector:{d1}"), "the first detector again")
            pilot_slot = (await http.get(url)).json()
            assert pilot_slot["current"]["version"] == pilot and pilot_slot["can_roll_back"] is False
            r = await http.post(f"{url}/rollback", headers=AUTH)
            assert r.status_code == 409, "the pilot slot has nothing to roll back to"

            # The detector's first version is the bottom of its stack: a clear removes the detector's
            # assignment (its retained topic emptied) and a rollback after it brings the detector back.
            r = await http.post(f"{url}/rollback", params={"slot": "detector"}, headers=AUTH)
            assert r.status_code == 409
            r = await http.delete(url, params={"slot": "detector"}, headers=AUTH)
            assert r.status_code == 200 and r.json()["current"] is None and r.json()["published"]
            listed = {(d["slot"], d["target"]): d["current"] for d in (await http.get("/deployments")).json()}
            assert listed == {("pilot", CAR): {"name": "pilot", "version": pilot}, ("detector", CAR): None}
            assert (await http.get(f"/cars/{CAR}", headers=AUTH)).json()["detector_deployment"] is None
            r = await http.post(f"{url}/rollback", params={"slot": "detector"}, headers=AUTH)
            assert r.json()["current"] == {"name": "detector", "version": d1}
            history = (await http.get(url, params={"slot": "detector"})).json()["history"]
            assert [h["action"] for h in history] == ["deploy", "deploy", "rollback", "clear", "rollback"]
            assert (await http.get(url)).json()["current"]["version"] == pilot

            # Each slot's envelope is refreshed before it expires, whichever slot was signed last.
            expiries = hub.catalog.model_expiries()
            pilot_exp, detector_exp = expiries[("car", CAR, "pilot")], expiries[("car", CAR, "detector")]
            assert detector_exp > pilot_exp  # the detector was signed after the pilot
            half = hub.deployer.envelope_ttl_s / 2
            assert hub.deployer.refresh_expiring(now=pilot_exp - half + 1e-3) == 1
            assert hub.catalog.model_expiries()[("car", CAR, "detector")] == detector_exp
            assert hub.deployer.refresh_expiring(now=detector_exp - half + 1e-3) == 1
            assert hub.catalog.model_expiries()[("car", CAR, "detector")] > detector_exp
            await asyncio.sleep(1.0)  # the refreshed envelopes hold the same models: nothing swaps
            assert await on(f"pilot:{pilot}", f"detector:{d1}")
