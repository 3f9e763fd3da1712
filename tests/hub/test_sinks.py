"""Telemetry sinks against real servers: VictoriaMetrics reads back every point influxdb-client
wrote; InfluxDB 1.x runs every Grafana dashboard query on data written by the hub; a dead sink
never holds up frames; SQLite retention is bounded."""

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hub import HubConfig, HubService
from hub.telemetry.sinks import SqliteSink, TelemetryRecord, line_protocol, to_points
from schemas.messages import JobProgress, LapEvent, OffTrackEvent, Telemetry
from tests.hub.conftest import eventually
from tests.hub.fakecar import FakeCar

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
# InfluxQL that InfluxDB 1.8+, 2.x (v1 API) and 3.x all run (3.x lacks INTEGRAL, SAMPLE, SLIMIT,
# SOFFSET, the technical-analysis functions and some metaqueries).
ALLOWED_FUNCTIONS = {
    "mean",
    "median",
    "max",
    "min",
    "last",
    "first",
    "count",
    "sum",
    "spread",
    "stddev",
    "percentile",
}


def _telemetry(i: int, session: str | None = "run-1") -> dict[str, Any]:
    return {
        "mode": "autopilot",
        "model": "pilot:3",
        "session": session,
        "recording": session is not None,
        "steering": round(-0.5 + i / 100, 3),
        "throttle": 0.3,
        "speed": 1.0 + i / 10,
        "loop_hz": 20.0,
        "loop_period_ms": 50.0 + i % 3,
        "loop_late_p50_ms": 0.2,
        "loop_late_p99_ms": 1.5 + i % 2,
        "missed_ticks": i // 10,
        "inference_ms": 4.0 + i % 5,
        "battery_v": 7.4,
        "cpu_temp_c": 55.0,
        "lap": 1,
        "progress": float(i % 100),
        "off_track": i % 7 == 0,
        "frames_dropped": 0,
        "spool_frames": i % 4,
    }


async def test_victoriametrics_reads_back_every_point(
    victoriametrics, mosquitto, make_config: Callable[..., HubConfig]
) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(
        mosquitto.url,
        sinks={
            "influxdb": {
                "enabled": True,
                "url": victoriametrics.url,
                "batch_size": 7,
                "flush_interval_s": 0.1,
            }
        },
    )
    car_id = f"vm-{uuid.uuid4().hex[:6]}"
    sent: list[Telemetry] = []
    async with HubService(cfg) as hub:
        car = FakeCar(mosquitto.url, car_id, prefix=cfg.topic_prefix).connect()
        base_ms = int(time.time() * 1000) - 60_000
        for i in range(30):
            sent.append(car.telemetry(ts=(base_ms + i * 100) / 1000, **_telemetry(i)))
        lap = LapEvent(
            lap=1,
            lap_time_s=12.25,
            off_track_count=2,
            model="pilot:3",
            mode="autopilot",
            ts=(base_ms + 5000) / 1000,
        )
        car.event(lap)
        await eventually(lambda: hub.sinks.get("influxdb").stats.written >= 31, what="points written")  # type: ignore[union-attr]
        car.close()
        assert hub.sinks.get("influxdb").stats.errors == 0  # type: ignore[union-attr]
    series = await asyncio.to_thread(victoriametrics.export, f'{{__name__=~"telemetry_.+", car="{car_id}"}}')
    got: dict[str, list[tuple[int, float]]] = {}
    for s in series:
        field = s["metric"]["__name__"].removeprefix("telemetry_")
        assert (
            s["metric"]["model"] == "pilot:3"
            and s["metric"]["mode"] == "autopilot"
            and s["metric"]["session"] == "run-1"
        )
        got[field] = sorted(zip(s["timestamps"], s["values"], strict=True))
    expected: dict[str, list[tuple[int, float]]] = {}
    for msg in sent:
        ts_ms = round(msg.ts * 1000)
        for name, value in msg.model_dump(exclude_none=True).items():
            if name in ("ts", "mode", "model", "session"):
                continue
            expected.setdefault(name, []).append((ts_ms, float(value)))
    assert got == {k: sorted(v) for k, v in expected.items()}
    laps = await asyncio.to_thread(victoriametrics.export, f'{{__name__=~"laps_.+", car="{car_id}"}}')
    assert {s["metric"]["__name__"]: s["values"] for s in laps} == {
        "laps_lap": [1.0],
        "laps_lap_time_s": [12.25],
        "laps_off_track_count": [2.0],
    }


def _grafana_queries() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dash = json.loads(path.read_text())
        for var in dash["templating"]["list"]:
            if var["type"] == "datasource":  # picks a datasource; not a query
                continue
            out.append((f"{path.name} variable {var['name']}", var["query"]))
        for panel in dash["panels"]:
            for t in panel["targets"]:
                out.append((f"{path.name} panel {panel['title']!r} {t['refId']}", t["query"]))
    return out


def _substitute(query: str, cars: list[str]) -> str:
    """What Grafana sends for a query: the time filter, the interval and the car variable."""
    return (
        query.replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval", "1s")
        .replace("$car", "(" + "|".join(re.escape(c) for c in cars) + ")")
    )


def test_dashboards_are_provisioned_and_portable() -> None:
    import yaml

    root = DASHBOARDS.parent
    ds = yaml.safe_load((root / "provisioning" / "datasources" / "paddock.yaml").read_text())["datasources"][
        0
    ]
    assert ds["type"] == "influxdb" and ds["jsonData"]["dbName"] == "paddock"
    provider = yaml.safe_load((root / "provisioning" / "dashboards" / "paddock.yaml").read_text())[
        "providers"
    ][0]
    assert provider["type"] == "file"
    names = sorted(p.stem for p in DASHBOARDS.glob("*.json"))
    assert names == ["fleet-overview", "ingest-health", "laps", "loop-timing", "race", "rl-training"]
    uids = set()
    for path in DASHBOARDS.glob("*.json"):
        dash = json.loads(path.read_text())
        uids.add(dash["uid"])
        # Importable into an existing Grafana: the datasource is asked for (__inputs) and chosen
        # by a variable, never a hard-coded uid; every board can be narrowed to cars.
        (wanted,) = dash["__inputs"]
        assert wanted["type"] == "datasource" and wanted["pluginId"] == "influxdb"
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "influxdb"
        assert variables["datasource"]["current"]["value"] == "${" + wanted["name"] + "}"
        assert variables["car"]["datasource"]["uid"] == "${datasource}"
        assert ds["uid"] not in path.read_text(), path.name
        for panel in dash["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", (path.name, panel["title"])
            for t in panel["targets"]:
                assert t["rawQuery"] is True and t["datasource"]["uid"] == "${datasource}"
                if re.search(r'FROM "(telemetry|laps|events|car_status|ingest)"', t["query"]):
                    assert '"car" =~ /^$car$/' in t["query"], (path.name, panel["title"])
    assert len(uids) == 6
    queries = _grafana_queries()
    assert len(queries) >= 30
    for where, q in queries:
        functions = {f.lower() for f in re.findall(r"([A-Za-z_]+)\(", q)} - {"time", "fill"}
        assert functions <= ALLOWED_FUNCTIONS, (where, functions - ALLOWED_FUNCTIONS)
        assert not re.search(
            r"\b(SLIMIT|SOFFSET|INTEGRAL|SAMPLE|INTO|SHOW SERIES|SHOW DATABASES)\b", q, re.I
        ), where
        assert "FROM (" not in q, f"{where}: no subqueries"
        if q.startswith("SELECT"):
            assert "$timeFilter" in q, f"{where}: every panel query is bounded in time"


async def test_every_dashboard_query_runs_on_influxdb1_with_the_hubs_data(
    influxdb1, mosquitto, make_config: Callable[..., HubConfig]
) -> None:  # type: ignore[no-untyped-def]
    db = f"paddock_{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(influxdb1.query, f'CREATE DATABASE "{db}"')
    cfg = make_config(
        mosquitto.url,
        sinks={
            "influxdb": {
                "enabled": True,
                "api": "v1",
                "url": influxdb1.url,
                "database": db,
                "batch_size": 50,
                "flush_interval_s": 0.1,
                "ingest_interval_s": 0.3,
            }
        },
    )
    cars = ["dash-a", "dash-b"]
    async with HubService(cfg) as hub:
        fleet = [FakeCar(mosquitto.url, c, prefix=cfg.topic_prefix).connect() for c in cars]
        for k, car in enumerate(fleet):
            for i in range(20):
                car.telemetry(**_telemetry(i + k))
            car.event(
                LapEvent(
                    lap=1,
                    lap_time_s=11.5 + k,
                    off_track_count=k,
                    model="pilot:3",
                    mode="autopilot",
                    ts=time.time(),
                )
            )
            car.event(OffTrackEvent(progress=42.0, lap=1, ts=time.time()))
            await asyncio.to_thread(car.record, "run-1", 20, skip={5})
            car.publish(car.topics.frames(car.car), b"garbage", qos=1)
        for iteration in (1, 2):  # an RL job's progress (the RL training dashboard)
            metrics = {"mean_reward": 20.0 * iteration, "completion_pct": 9.0 * iteration, "steps": 1280.0,
                       "episodes": 30.0 * iteration, "episodes_off_track": 29.0, "episodes_crashed": 0.0,
                       "episodes_lap_complete": 1.0, "best_lap_time_s": 21.5}  # fmt: skip
            progress = JobProgress(
                job="rl-dash", kind="rl", state="running", stage="training", epoch=iteration,
                step=1280 * iteration, metrics=metrics, ts=time.time(),
            )  # fmt: skip
            fleet[0].publish(fleet[0].topics.job_progress("rl", "rl-dash"), progress.to_json(), qos=1)
        for gen in range(3):  # an optimize job's generations, as a trainer reports them
            metrics = {"best": 9.0 - gen, "mean": 12.0, "std": 1.5, "evaluations": 30.0, "evals_per_s": 400.0}
            progress = JobProgress(
                job="race-1",
                kind="optimize",
                state="running",
                stage="generation",
                ts=time.time(),
                epoch=gen,
                epochs=3,
                loss=9.0 - gen,
                metrics=metrics,
            )
            fleet[0].publish(fleet[0].topics.job_progress("optimize", "race-1"), progress.to_json(), qos=1)
        influx = hub.sinks.get("influxdb")
        assert influx is not None
        await eventually(
            lambda: influx.stats.written >= 2 * 20 + 4 + 2 + 3 + 2,
            what="telemetry, events, statuses and job progress written",
        )
        await asyncio.sleep(1.0)  # a few ingest snapshots
        await eventually(lambda: influx.flush(1), what="sink flushed")
        for car in fleet:
            car.close()
        assert influx.stats.errors == 0, influx.stats.last_error
    for where, query in _grafana_queries():
        q = _substitute(query, cars)
        result = (await asyncio.to_thread(influxdb1.query, q, db))["results"][0]
        assert "error" not in result, f"{where}: {result['error']}\n{q}"
        series = result.get("series") or []
        values = [
            v for s in series for row in s["values"] for v in (row[1:] if q.startswith("SELECT") else row)
        ]
        assert any(v is not None for v in values), f"{where} returned no data:\n{q}"
    # and the numbers are the hub's: 1 frame lost per car, 1 malformed per car
    r = await asyncio.to_thread(
        influxdb1.query, 'SELECT last("missing"), last("malformed") FROM "ingest" GROUP BY "car"', db
    )
    by_car = {s["tags"]["car"]: s["values"][0][1:] for s in r["results"][0]["series"]}
    assert by_car == {"dash-a": [1.0, 1.0], "dash-b": [1.0, 1.0]}
    r = await asyncio.to_thread(
        influxdb1.query,
        'SELECT min("best"), last("epoch") FROM "job_progress" WHERE "kind" = \'optimize\' '
        'GROUP BY "job", "kind"',
        db,
    )
    (series,) = r["results"][0]["series"]
    assert series["tags"] == {"job": "race-1", "kind": "optimize"} and series["values"][0][1:] == [7.0, 2.0]


async def test_a_dead_sink_never_holds_up_frames(mosquitto, make_config: Callable[..., HubConfig]) -> None:  # type: ignore[no-untyped-def]
    from deploy.broker import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    cfg = make_config(
        mosquitto.url,
        sinks={
            "influxdb": {
                "enabled": True,
                "url": dead,
                "queue_size": 20,
                "batch_size": 5,
                "flush_interval_s": 0.05,
                "retry_max_s": 0.2,
                "timeout_s": 0.5,
            },
        },
    )
    async with HubService(cfg) as hub:
        car = FakeCar(mosquitto.url, "car-dead", prefix=cfg.topic_prefix).connect()
        for i in range(100):
            car.telemetry(**_telemetry(i))
        sent = await asyncio.to_thread(car.record, "s", 300)
        car.stop_recording("s")
        await hub.wait_sealed("car-dead", "s")
        await eventually(
            lambda: hub.sqlite_sink and hub.sqlite_sink.count("telemetry") == 100, what="sqlite rows"
        )
        influx = hub.sinks.get("influxdb")
        assert influx is not None
        assert influx.stats.errors > 0 and influx.stats.dropped > 0 and influx.stats.written == 0
        assert not influx.healthy
        health = hub.health()
        assert (
            health["sinks"]["influxdb"]["healthy"] is False and health["sinks"]["sqlite"]["healthy"] is True
        )
        car.close()
    assert hub.ingest_stats().cars["car-dead"].frames_sealed == len(sent) == 300


def test_sqlite_retention_is_bounded(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "t.sqlite", retention_s=3600, max_rows=1000)
    now = time.time()
    old = [TelemetryRecord("c", Telemetry(seq=i, ts=now - 7200, mode="manual")) for i in range(300)]
    new = [TelemetryRecord("c", Telemetry(seq=i, ts=now - 10 + i / 1000, mode="manual")) for i in range(1500)]
    sink.write(old + new)  # type: ignore[arg-type]
    assert sink.count("telemetry") == 1800
    sink.housekeeping()
    assert sink.count("telemetry") == 1000
    rows = sink.telemetry("c", limit=5000)
    assert [r["seq"] for r in rows] == list(range(500, 1500))  # the newest stay
    sink.close()


def test_line_protocol_escapes_and_types() -> None:
    msg = Telemetry(
        seq=1, ts=1700000000.5, mode="manual", model="pilot v2,beta=x", steering=0.25, recording=True
    )
    lines = line_protocol(to_points(TelemetryRecord("c-1", msg)))
    # Every field is a float (no "i" suffix), so a field never changes type between writes.
    assert lines == [
        "telemetry,car=c-1,mode=manual,model=pilot\\ v2\\,beta\\=x "
        "recording=1,seq=1,steering=0.25,throttle=0 1700000000500000000"
    ]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_numbers_never_reach_a_sink(bad: float) -> None:
    from hub.telemetry.sinks import _num

    assert _num(bad) is None


def test_job_progress_becomes_points_and_a_bare_state_change_none() -> None:
    from hub.telemetry.sinks import JobProgressRecord

    gen = JobProgress(
        job="race-1",
        kind="optimize",
        state="running",
        stage="generation",
        ts=1.0,
        epoch=4,
        loss=7.5,
        metrics={"best": 7.5, "evals_per_s": 300.0},
    )
    (point,) = to_points(JobProgressRecord(gen))
    assert point.measurement == "job_progress"
    assert point.tags == {"job": "race-1", "kind": "optimize", "stage": "generation"}
    assert point.fields == {"epoch": 4.0, "loss": 7.5, "best": 7.5, "evals_per_s": 300.0}
    started = JobProgress(job="race-1", kind="optimize", state="running", stage="starting", ts=1.0)
    assert to_points(JobProgressRecord(started)) == []
