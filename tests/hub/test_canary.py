"""The canary end to end: a real hub and Mosquitto, two simulated cars on a group's model. A good
candidate drives on one car first and is promoted to the group; a candidate that steers hard left
all the time leaves the track on the canary car and is rolled back, while the other car never
sees it."""

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest

from hub import HubConfig, HubService
from hub.config import MlopsConfig
from hub.mlops.canary import Canary, CarFigures, judge
from hub.mlops.gate import Figures
from schemas.model_card import ModelCard
from tests.edge.harness import RecordingDaemon
from tests.edge.modelkit import onnx_model
from tests.edge.trained import CARD, tiny_pilot
from tests.hub.conftest import TOKEN, eventually, register_model, signed_sim_car

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CARS = ("sim-a", "sim-b")
WINDOW_S = 20.0


def same_pilot_new_bytes(model: bytes) -> bytes:
    """The same network with another doc string: a new version (another sha256) that drives alike."""
    proto = onnx.load_from_string(model)
    proto.doc_string = "retrained (same weights)"
    return proto.SerializeToString()


def evaluation(model: bytes, card: ModelCard) -> dict[str, float]:
    """The candidate's closed-loop evaluation in the simulator: one lap of the oval."""
    from trainer.evaluate import OnnxPilot, _evaluation_metrics, closed_loop

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        path.write_bytes(model)
        report = closed_loop(OnnxPilot(path, card), "oval", laps=1, video=False, max_time_s=40)
    return _evaluation_metrics(report)


async def register(
    http: httpx.AsyncClient,
    hub: HubService,
    model: bytes,
    card: ModelCard,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
) -> str:
    metrics = metrics or await asyncio.to_thread(evaluation, model, card)
    lineage = {"metrics": metrics} | ({"dataset": dataset} if dataset else {})
    return await register_model(http, "pilot", model, card.model_dump_json(), lineage)


def sim_car(tmp_path: Path, hub: HubService, car: str) -> Any:
    return signed_sim_car(tmp_path, hub, car, publish={"telemetry_hz": 5})


@pytest.fixture
async def hub(mosquitto: Any, make_config: Callable[..., HubConfig]) -> AsyncIterator[HubService]:
    mlops = {"canary_window_s": WINDOW_S, "canary_max_incidents": 4}
    async with HubService(make_config(mosquitto.url, mlops=mlops)) as h:
        yield h


async def until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:  # noqa: ASYNC109
    return await eventually(check, timeout, what, interval=0.3)


async def active(http: httpx.AsyncClient, model: str, cars: tuple[str, ...] = CARS) -> bool:
    """Whether each of ``cars`` says it drives ``model`` (name:version), as the hub lists them."""
    rows = {c["car"]: c for c in (await http.get("/cars")).json()}
    return all((rows.get(car, {}).get("model_state") or {}).get("active") == model for car in cars)


async def deploy(http: httpx.AsyncClient, version: str, **options: Any) -> httpx.Response:
    """``POST /deployments`` of pilot:``version`` to the group ``fleet``."""
    body = {"model": {"name": "pilot", "version": version}, "group": "fleet", **options}
    return await http.post("/deployments", json=body, headers=AUTH)


async def decision(http: httpx.AsyncClient, canary: str, timeout: float) -> Canary:  # noqa: ASYNC109
    """The canary once the hub (or someone) has decided it."""

    async def decided() -> Canary | None:
        c = Canary.model_validate((await http.get(f"/canaries/{canary}")).json())
        return c if c.state != "running" else None

    result: Canary = await until(decided, "the canary's decision", timeout=timeout)
    return result


async def test_a_good_model_is_promoted_and_a_bad_one_rolled_back(hub: HubService, tmp_path: Path) -> None:
    baseline_bytes = await asyncio.to_thread(tiny_pilot)
    async with httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http, AsyncExitStack() as stack:
        v1 = await register(http, hub, baseline_bytes, CARD)
        good = await register(http, hub, same_pilot_new_bytes(baseline_bytes), CARD)
        lefty = onnx_model(width=80, height=60, steering=-1.0, throttle=0.5)
        bad = await register(http, hub, lefty, CARD)
        r = await deploy(http, v1)
        assert r.status_code == 201, r.text
        for car in CARS:
            await stack.enter_async_context(RecordingDaemon(sim_car(tmp_path, hub, car)))

        await until(lambda: active(http, f"pilot:{v1}"), "both cars on the group's model")

        promoted = await run_canary(http, good)
        print("good candidate:", json.dumps(promoted.model_dump(mode="json"), indent=1))
        assert promoted.state == "promoted" and promoted.reasons == [], promoted.reasons
        [canary_car] = promoted.cars
        [fig] = promoted.canary_figures
        assert fig.model == f"pilot:{good}" and fig.laps >= 1 and fig.off_track == 0
        assert promoted.baseline_figures and promoted.baseline_figures[0].model == f"pilot:{v1}"
        group = (await http.get("/deployments/group/fleet")).json()
        assert group["current"]["version"] == good
        assert (await http.get(f"/deployments/car/{canary_car}")).json()["current"] is None
        await until(lambda: active(http, f"pilot:{good}"), "the group on the promoted model")

        rolled = await run_canary(http, bad)
        print("bad candidate:", json.dumps(rolled.model_dump(mode="json"), indent=1))
        assert rolled.state == "rolled_back" and rolled.decided_by == "hub"
        assert any("off-track" in reason for reason in rolled.reasons), rolled.reasons
        assert (await http.get("/deployments/group/fleet")).json()["current"]["version"] == good
        await until(lambda: active(http, f"pilot:{good}"), "the canary car back on the group's model")

        events = (await http.get(f"/cars/{rolled.cars[0]}/events", params={"type": "canary"})).json()
        states = [(e["canary"], e["state"]) for e in events]
        assert (rolled.id, "rolled_back") in states and (rolled.id, "started") in states
        metrics = (await http.get("/metrics")).text
        assert 'paddock_canary_decisions_total{decision="promoted",group="fleet"} 1.0' in metrics
        assert 'paddock_canary_decisions_total{decision="rolled_back",group="fleet"} 1.0' in metrics


async def run_canary(http: httpx.AsyncClient, version: str) -> Canary:
    body = {"model": {"name": "pilot", "version": version}, "group": "fleet", "requested_by": "test"}
    r = await http.post("/canaries", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    started = Canary.model_validate(r.json())
    assert started.state == "running" and len(started.cars) == 1 and len(started.others) == 1
    r = await http.post("/canaries", json=body, headers=AUTH)
    assert r.status_code == 409 and "already has a canary" in r.text
    return await decision(http, started.id, WINDOW_S + 60)


def figures(car: str, model: str, laps: int = 3, lap: float = 11.0, off: int = 0) -> CarFigures:
    return CarFigures(
        car=car,
        model=model,
        minutes=1.0,
        off_track=off,
        interventions=0,
        off_track_per_min=float(off),
        interventions_per_min=0.0,
        laps=laps,
        median_lap_s=lap if laps else None,
    )


def test_judge_compares_the_canary_with_the_group_and_its_evaluation() -> None:
    cfg = MlopsConfig()
    ev = Figures(model="p:2", completion_pct=100, best_lap_time_s=10.0, source="evaluation")
    canary = Canary(
        id="c",
        group="g",
        model="p:2",
        baseline="p:1",
        cars=["a"],
        others=["b"],
        started=0,
        window_s=1,
        evaluation=ev,
        canary_figures=[figures("a", "p:2", lap=11.5)],
        baseline_figures=[figures("b", "p:1", lap=11.0)],
    )
    assert judge(cfg, canary) == []
    slow = canary.model_copy(update={"canary_figures": [figures("a", "p:2", lap=13.0)]})
    assert judge(cfg, slow) == [
        "a: median lap 13.00 s > group 11.00 s + 10%",
        "a: median lap 13.00 s > evaluation 10.00 s + 25%",
    ]
    lost = canary.model_copy(update={"canary_figures": [figures("a", "p:2", laps=0, off=12)]})
    assert judge(cfg, lost) == [
        "a: 12 off-track moments and interventions (limit 10)",
        "a: off-track 12.00/min > group 0.00/min + 0.5",
        "a: 0 flying laps in the window, 1 needed",
    ]
    never = canary.model_copy(update={"canary_figures": [figures("a", "p:1")], "refused": {"a": "too slow"}})
    assert judge(cfg, never) == ["a refused p:2: too slow", "a never drove p:2"]


async def test_a_deployment_to_a_canary_group_starts_a_canary(
    mosquitto: Any, make_config: Callable[..., HubConfig], tmp_path: Path
) -> None:
    """``[mlops] canary_groups``: POST /deployments to the group tries the model on one car first,
    the gate judging it before (a forced start is recorded); ``canary: false`` deploys to all."""
    mlops = {"gate": True, "canary_groups": ["fleet"], "canary_window_s": 600}
    steady = {"completion_pct": 100.0, "best_lap_time_s": 11.0, "off_track_count": 0}
    card = CARD.model_copy(update={"input": CARD.input.model_copy(update={"width": 160, "height": 120})})
    async with (
        HubService(make_config(mosquitto.url, mlops=mlops)) as hub,
        httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http,
        AsyncExitStack() as stack,
    ):
        v1 = await register(http, hub, onnx_model(steering=0.0, throttle=0.3), card, metrics=steady)
        good = await register(http, hub, onnx_model(steering=0.01, throttle=0.3), card, metrics=steady)
        bad = await register(http, hub, onnx_model(steering=-1.0), card, metrics={"completion_pct": 0.0})

        first = await deploy(http, v1)  # the group's first model: nothing to compare a canary with
        assert first.status_code == 201 and first.json()["canary"] is None, first.text
        for car in CARS:
            await stack.enter_async_context(RecordingDaemon(sim_car(tmp_path, hub, car)))

        await until(lambda: active(http, f"pilot:{v1}"), "both cars on the group's model")
        refused = await deploy(http, bad, requested_by="test")
        assert refused.status_code == 409, refused.text
        assert "completion 0.0% < current 100.0%" in refused.json()["detail"]["gate"]["reasons"]
        assert (await http.get("/canaries")).json() == []

        forced = await deploy(http, bad, requested_by="test", force=True)
        assert forced.status_code == 201, forced.text
        out = forced.json()
        canary = Canary.model_validate(out["canary"])
        assert canary.forced and canary.model == f"pilot:{bad}" and canary.requested_by == "test"
        assert out["current"]["version"] == v1  # the group keeps its model until the canary is promoted
        [car] = canary.cars
        await until(lambda: active(http, f"pilot:{bad}", (car,)), "the canary car on the candidate")
        assert await active(http, f"pilot:{v1}", tuple(c for c in CARS if c != car))
        listed = [Canary.model_validate(c) for c in (await http.get("/canaries")).json()]
        assert [(c.id, c.state, c.forced) for c in listed] == [(canary.id, "running", True)]
        r = await http.post(f"/canaries/{canary.id}/rollback", headers=AUTH)
        assert r.status_code == 200 and r.json()["state"] == "rolled_back", r.text
        await until(lambda: active(http, f"pilot:{v1}"), "the canary car back on the group's model")

        direct = await deploy(http, good, canary=False)
        assert direct.status_code == 201 and direct.json()["canary"] is None, direct.text
        assert direct.json()["current"]["version"] == good and direct.json()["gate"]["passed"]
        await until(lambda: active(http, f"pilot:{good}"), "every car on the model deployed without a canary")
        assert len((await http.get("/canaries")).json()) == 1
