"""The car daemon's own Prometheus /metrics: a simulated car with metrics on, scraped over HTTP
while it drives; the figures move with what the car does."""

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.config import CarConfig, ConfigError
from tests.edge.harness import RecordingDaemon, T, clear_retained, sim_car_config, until
from tests.edge.modelkit import onnx_model, signed_envelope
from tests.missing import missing

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def exposition(port: int) -> str:
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    reply.raise_for_status()
    return reply.text


async def scrape(port: int) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await exposition(port))
        for s in family.samples
    }


def promtool_lint(text: str) -> str:
    """``promtool check metrics``: Prometheus' own lint of names, units, types and help texts."""
    tool = shutil.which("promtool")
    if tool is None:
        missing("promtool not found: apt-get install prometheus (script/setup dev installs it)")
    done = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    return "" if done.returncode == 0 else done.stdout + done.stderr


def num(samples: Samples, metric: str, **labels: str) -> float:
    found = value(samples, metric, **labels)
    assert found is not None, f"no {metric} {labels}"
    return found


def value(samples: Samples, metric: str, **labels: str) -> float | None:
    want = {"car": "sim-metrics", **labels}
    found = [v for (n, ls), v in samples.items() if n == metric and want.items() <= dict(ls).items()]
    return found[0] if found else None


async def test_a_driving_car_serves_metrics_that_move(mosquitto: Any, tmp_path: Path) -> None:
    car = "sim-metrics"
    cfg = sim_car_config(
        tmp_path, mosquitto.url, car=car, loop={"autopilot": "expert"}, metrics={"enabled": True, "port": 0}
    )
    async with RecordingDaemon(cfg) as daemon:
        assert daemon.metrics is not None and daemon.metrics.port
        port = daemon.metrics.port
        first = await scrape(port)
        await until(lambda: daemon.loop.health.last_lap_s is not None, 60, "a lap by the expert")
        second = await scrape(port)
        assert num(second, "paddock_car_ticks_total") > num(first, "paddock_car_ticks_total")
        late = ("paddock_car_loop_lateness_seconds_count", "paddock_car_loop_lateness_seconds_bucket")
        assert num(second, late[0]) > num(first, late[0]) > 0
        assert value(second, late[1], le="+Inf") == value(second, late[0])
        assert value(second, "paddock_car_lap_time_seconds_count") == 1
        assert value(second, "paddock_car_last_lap_seconds") == daemon.loop.health.last_lap_s
        assert value(second, "paddock_car_mode", mode="autopilot") == 1
        assert value(second, "paddock_car_missed_ticks_total") is not None
        assert value(second, "paddock_car_outbox_events") is not None
        assert value(second, "paddock_car_broker_connected") == 1
        assert value(second, "paddock_car_inference_seconds_count") == 0  # the expert runs no network
        assert value(second, "paddock_car_model_info") is None

        # A model that steers a constant 0.4 right: it runs inference every tick and leaves the oval.
        envelope = signed_envelope(onnx_model(steering=0.4, throttle=0.6), None, name="veer", version="3")
        assert await daemon.offer_model(envelope)
        daemon.set_autopilot("model")
        await until(lambda: daemon.loop.health.off_track > 0, 60, "the model to leave the track")
        third = await scrape(port)
        assert num(third, "paddock_car_inference_seconds_count") > 10
        assert 0 < num(third, "paddock_car_inference_seconds_sum") < 1
        assert num(third, "paddock_car_off_track_total") >= 1
        [sha] = [dict(ls)["sha256"] for (n, ls), _ in third.items() if n == "paddock_car_model_info"]
        assert value(third, "paddock_car_model_info", model="veer:3", name="veer", version="3") == 1
        assert sha == daemon.models.active.sha256  # type: ignore[union-attr]

        before = num(third, "paddock_car_interventions_total")  # the simulator's resets count too
        daemon.set_mode("manual")  # a human takes over
        await until(lambda: daemon.loop.health.interventions > before, what="the takeover")
        fourth = await scrape(port)
        assert before < num(fourth, "paddock_car_interventions_total") <= daemon.loop.health.interventions
        assert value(fourth, "paddock_car_mode", mode="manual") == 1
        assert promtool_lint(await exposition(port)) == ""
    with pytest.raises(httpx.ConnectError):  # the server closed with the car
        await scrape(port)
    await clear_retained(mosquitto.url, [T.car_status(car), T.model_state(car)])


async def test_metrics_are_off_by_default_and_on_loopback_when_on(mosquitto: Any, tmp_path: Path) -> None:
    cfg = sim_car_config(tmp_path, mosquitto.url, car="sim-nometrics", loop={"autopilot": "expert"})
    assert not cfg.metrics.enabled and cfg.metrics.bind == "127.0.0.1"
    async with RecordingDaemon(cfg) as daemon:
        assert daemon.metrics is None
    await clear_retained(mosquitto.url, [T.car_status("sim-nometrics")])


async def test_a_busy_metrics_port_leaves_the_car_driving(mosquitto: Any, tmp_path: Path) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    busy = blocker.sockets[0].getsockname()[1]
    cfg = sim_car_config(
        tmp_path, mosquitto.url, car="sim-busyport", loop={"autopilot": "expert"},
        metrics={"enabled": True, "port": busy},
    )  # fmt: skip
    try:
        async with RecordingDaemon(cfg) as daemon:
            assert daemon.metrics is None
            ticks = daemon.loop.timer.ticks
            await until(lambda: daemon.loop.timer.ticks > ticks + 10, what="ticks")
    finally:
        blocker.close()
        await blocker.wait_closed()
    await clear_retained(mosquitto.url, [T.car_status("sim-busyport")])


@pytest.mark.parametrize("bad", [{"port": 70000}, {"bind": ""}, {"prot": 1}])
def test_metrics_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="metrics"):
        CarConfig.from_dict({"car": {"id": "c"}, "metrics": bad})
