"""Model monitoring on the hub: PSI drift against the card, fleet metrics, drift events."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import numpy as np
import pytest

from firmware.sim.render import Randomization, Renderer
from firmware.sim.tracks import get_track
from hub import HubConfig, HubService
from hub.config import MlopsConfig
from hub.mlops.monitor import FleetMonitor
from schemas.input_stats import InputStats, InputStatsAccumulator, input_drift, psi
from schemas.messages import DriftEvent, Telemetry
from schemas.model_card import InputSpec, ModelCard, OutputSpec
from tests.hub.conftest import TOKEN
from tests.hub.fakecar import FakeCar


def sim_stats(laps_from: float, frames: int = 12, dim: bool = False) -> InputStats:
    """Input statistics of camera frames along the simulator's oval (``dim``: a lighting change)."""
    track = get_track("oval")
    renderer = Renderer(track)
    if dim:  # the lights dim and the floor and road change colour
        renderer.randomize(np.random.default_rng(3), Randomization(enabled=True, brightness=(0.45, 0.45)))
    acc = InputStatsAccumulator()
    for i in range(frames):
        s = (laps_from + i / frames) * track.length / 2
        x, y = track.point_at(s)
        acc.add(renderer.render(x, y, track.heading_at(s)))
    stats = acc.stats()
    assert stats is not None
    return stats


@pytest.fixture(scope="module")
def sim() -> dict[str, InputStats]:
    return {"train": sim_stats(0.0), "same": sim_stats(0.37), "dim": sim_stats(0.37, dim=True)}


def test_psi_is_zero_for_equal_histograms_and_grows_with_the_shift() -> None:
    ref = [0.25, 0.25, 0.25, 0.25]
    assert psi(ref, ref) == 0.0
    assert 0 < psi(ref, [0.3, 0.25, 0.25, 0.2]) < psi(ref, [0.7, 0.1, 0.1, 0.1])
    with pytest.raises(ValueError):
        psi(ref, [1.0])


def test_a_lighting_change_in_the_simulator_drifts(sim: dict[str, InputStats]) -> None:
    threshold = MlopsConfig().drift_threshold
    same, dim = input_drift(sim["train"], sim["same"]), input_drift(sim["train"], sim["dim"])
    print(f"PSI same lighting {same:.3f}, dimmed lighting {dim:.3f} (threshold {threshold})")
    assert same < threshold < dim


def test_the_monitor_raises_drift_after_reports_in_a_row(sim: dict[str, InputStats]) -> None:
    events: list[tuple[str, DriftEvent]] = []
    monitor = FleetMonitor(
        MlopsConfig(drift_reports=2), lambda ref: sim["train"], lambda c, e: events.append((c, e))
    )

    def report(seq: int, stats: InputStats, interventions: int = 0) -> None:
        msg = Telemetry(
            seq=seq,
            ts=100.0 + seq * 10,
            mode="autopilot",
            model="pilot:1",
            input_stats=stats,
            interventions=interventions,
            off_track_count=0,
            lap_time_s=11.0,
        )
        monitor.on_telemetry("car-1", msg)

    report(0, sim["same"])
    report(1, sim["dim"])
    assert events == []  # one odd report is not a changed world
    report(2, sim["dim"], interventions=3)
    assert [(c, e.drifted) for c, e in events] == [("car-1", True)]
    row = monitor.rows()[0]
    assert row.drifted and row.drift_score == pytest.approx(input_drift(sim["train"], sim["dim"]))
    assert row.interventions_per_min == pytest.approx(3 / (20 / 60)) and row.degraded
    report(3, sim["same"])
    report(4, sim["same"])
    assert [e.drifted for _, e in events] == [True, False]


async def poll(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while (result := await check()) is None or result == []:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
    return result


@pytest.fixture
async def hub(mosquitto: Any, make_config: Callable[..., HubConfig]) -> AsyncIterator[HubService]:
    async with HubService(make_config(mosquitto.url, mlops={"drift_reports": 1})) as h:
        yield h


async def test_fleet_metrics_and_a_drift_event(hub: HubService, sim: dict[str, InputStats]) -> None:
    card = ModelCard(
        architecture="x",
        input=InputSpec(width=8, height=8),
        outputs=[OutputSpec(name="steering")],
        input_stats=sim["train"],
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
        r = await http.post(
            "/models",
            data={"name": "pilot", "card": card.model_dump_json()},
            files={"artifact": ("m.onnx", b"\x08\x01" * 100)},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        car = FakeCar(hub.config.mqtt.url, "car-7", prefix=hub.config.topic_prefix).connect()
        try:
            for i, stats in enumerate([sim["same"], sim["dim"]]):
                await asyncio.to_thread(
                    car.telemetry,
                    mode="autopilot",
                    model="pilot:1",
                    input_stats=stats,
                    interventions=i,
                    off_track_count=0,
                    inference_ms=2.5,
                    lap_time_s=10.5,
                )
                await asyncio.sleep(0.3)

            async def drifted() -> str | None:
                text = (await http.get("/metrics")).text
                return text if 'paddock_fleet_drifted{car="car-7",model="pilot:1"} 1.0' in text else None

            text = await poll(drifted, "drift in /metrics")
            for name in ("drift_score", "inference_ms", "lap_time_seconds", "interventions_per_minute"):
                assert f'paddock_fleet_{name}{{car="car-7",model="pilot:1"}}' in text
            assert "paddock_fleet_drift_threshold 0.25" in text

            async def drift_events() -> list[Any]:
                r = await http.get("/cars/car-7/events", params={"type": "drift"})
                return r.json() if r.status_code == 200 and r.json() else []

            events = await poll(drift_events, "a drift event")
            assert json.dumps(events[0]).count('"drifted": true') == 1, events
        finally:
            car.close()
