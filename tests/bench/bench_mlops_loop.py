"""The MLOps loop as a scenario: a hub, Mosquitto and two simulated cars on autopilot on a group's
model whose card holds its training input statistics. The lights dim on both cars; with no human
action the hub raises drift (goal: within 60 s), the drift trigger queues a train job, then two
candidates go through the evaluation gate and the canary: a good one is promoted to the group; a bad
one (steers hard left all the time) is refused by the gate, and, forced past it, rolled back from
the canary. Prints the timeline with every step's time and figures, and plots it.

The trainer is not run here: the queued job's reason and dataset are shown, and the good candidate
is the group's pilot exported again (another version, the same network), standing in for what the
job would produce. Each candidate's evaluation is a real closed-loop lap in the simulator under the
dimmed lights (where a retrained model would be evaluated); the group's model keeps its evaluation
from before the change, which the gate compares with.

    python -m pytest tests/bench/bench_mlops_loop.py -s -p no:cacheprovider -o python_files='bench_*.py'
    python -m tests.bench.bench_mlops_loop [--out DIR]
"""

import asyncio
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from firmware.sim import Randomization
from hub import HubConfig, HubService
from hub.mlops.canary import Canary
from hub.mlops.gate import figures_of
from tests.bench.bench_edge_loop import Broker
from tests.edge.harness import RecordingDaemon
from tests.edge.modelkit import onnx_model
from tests.edge.trained import CARD, tiny_pilot
from tests.hub.test_canary import AUTH, CARS, register, same_pilot_new_bytes, sim_car, until
from tests.hub.test_mlops import sim_stats

WINDOW_S = 30.0
DIMMED = Randomization(enabled=True, brightness=(0.45, 0.45))  # the lights dim, the colours change


def evaluate_dimmed(model: bytes) -> dict[str, float]:
    """A closed-loop lap of the oval in the simulator with the lights dimmed as on the cars (the
    conditions a retrained model is evaluated in)."""
    from firmware.sim import World, WorldConfig, drive
    from trainer.evaluate import OnnxPilot

    world = World("oval", WorldConfig(), seed=0)
    world.reset(0)
    world.renderer.randomize(np.random.default_rng(3), DIMMED)  # as on the cars (drive does not reset)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "m.onnx").write_bytes(model)
        pilot = OnnxPilot(Path(tmp) / "m.onnx", CARD)
        result = drive(world, lambda w: pilot.act(w.render()), laps=1, max_time_s=40, recover=False)
    partial = 0.0 if result.finished else max(0.0, min(100.0, world.status.progress)) / 100
    metrics = {
        "completion_pct": round(100 * min(1.0, result.laps + partial), 2),
        "off_track_count": result.off_track,
    }
    return metrics | ({"best_lap_time_s": result.best_lap} if result.best_lap else {})


class Timeline:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.rows: list[tuple[float, str, str]] = []

    def mark(self, step: str, figures: str = "") -> None:
        t = time.monotonic() - self.t0
        self.rows.append((t, step, figures))
        print(f"  {t:7.1f} s  {step:<34} {figures}", flush=True)


def hub_config(url: str, tmp: Path) -> HubConfig:
    uid = uuid.uuid4().hex[:8]
    return HubConfig.from_dict(
        {
            "data_dir": str(tmp / "hub"),
            "topic_prefix": f"b{uid}",
            "mqtt": {"url": url, "client_id": f"hub-{uid}", "connect_wait_s": 10},
            "api": {"port": 0, "token": AUTH["Authorization"].split()[1]},
            "mlops": {
                "gate": True,
                "retrain_on_drift": True,
                "retrain_evaluate_track": "oval",
                "canary_window_s": WINDOW_S,
                "canary_max_incidents": 4,
            },
        }
    )


async def scenario(url: str, tmp: Path) -> Timeline:
    tl = Timeline()
    card = CARD.model_copy(update={"input_stats": sim_stats(0.0, frames=24)})
    pilot = await asyncio.to_thread(tiny_pilot)
    async with HubService(hub_config(url, tmp)) as hub, AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=hub.api_url, timeout=30))
        hub.catalog.create_dataset("laps", {"name": "laps", "train": [], "val": []})
        v1 = await register(http, hub, pilot, card, dataset="laps")
        r = await http.post(
            "/deployments", json={"model": {"name": "pilot", "version": v1}, "group": "fleet"}, headers=AUTH
        )
        assert r.status_code == 201, r.text
        daemons = [await stack.enter_async_context(RecordingDaemon(sim_car(tmp, hub, car))) for car in CARS]
        await until(lambda: _active(http, f"pilot:{v1}"), "the fleet on the group's model")
        await asyncio.sleep(6)
        tl.mark("fleet on autopilot", f"pilot:{v1} on {', '.join(CARS)}; PSI {_psi(hub)}")
        for d in daemons:
            d.body.sim.world.renderer.randomize(np.random.default_rng(3), DIMMED)
        tl.mark("lights dim, colours change")
        changed = time.monotonic()
        await until(lambda: _events(http, "drift"), "drift", timeout=90)
        tl.mark(
            "drift raised",
            f"{time.monotonic() - changed:.1f} s after the change (goal <= 60); PSI {_psi(hub)}",
        )
        [job] = await until(lambda: _jobs(hub), "a triggered train job")
        request = job["request"]
        tl.mark(
            "train job queued", f"{job['job']} on {request['params']['dataset']}: {request['requested_by']}"
        )

        current = await asyncio.to_thread(evaluate_dimmed, pilot)
        hub.catalog.add_evaluation("pilot", v1, "evaluate-dimmed", current, {})
        tl.mark("current model re-evaluated", _evaluation(hub, v1))
        candidate = same_pilot_new_bytes(pilot)
        dimmed = await asyncio.to_thread(evaluate_dimmed, candidate)
        good = await register(http, hub, candidate, card, dataset="laps", metrics=dimmed)
        tl.mark("good candidate evaluated", _evaluation(hub, good))
        promoted = await _canary(http, good, tl)
        tl.mark(f"canary {promoted.state}", _decision(promoted))

        lefty = onnx_model(width=80, height=60, steering=-1.0, throttle=0.5)
        dimmed = await asyncio.to_thread(evaluate_dimmed, lefty)
        bad = await register(http, hub, lefty, card, dataset="laps", metrics=dimmed)
        tl.mark("bad candidate evaluated", _evaluation(hub, bad))
        body = {"model": {"name": "pilot", "version": bad}, "group": "fleet"}
        refused = await http.post("/canaries", json=body, headers=AUTH)
        tl.mark(f"gate: {refused.status_code}", "; ".join(refused.json()["detail"]["gate"]["reasons"]))
        rolled = await _canary(http, bad, tl, force=True)
        tl.mark(f"canary {rolled.state}", _decision(rolled))
        group = (await http.get("/deployments/group/fleet")).json()["current"]
        tl.mark("group stays on", f"pilot:{group['version']}")
    return tl


async def _active(http: httpx.AsyncClient, model: str) -> bool:
    rows = {c["car"]: c for c in (await http.get("/cars")).json()}
    return all((rows.get(car, {}).get("model_state") or {}).get("active") == model for car in CARS)


async def _events(http: httpx.AsyncClient, kind: str) -> list[Any]:
    out = []
    for car in CARS:
        out += (await http.get(f"/cars/{car}/events", params={"type": kind})).json()
    return out


async def _jobs(hub: HubService) -> list[Any]:
    return hub.catalog.list_jobs("train")


def _psi(hub: HubService) -> str:
    return ", ".join(f"{r.car} {r.drift_score:.3f}" for r in hub.monitor.rows() if r.drift_score is not None)


def _evaluation(hub: HubService, version: str) -> str:
    figures = figures_of(hub.catalog, "pilot", version)
    assert figures is not None
    m = figures.model_dump()
    lap = m["best_lap_time_s"]
    lap_s = f"{lap:.2f} s" if lap else "none"
    return (
        f"pilot:{version}: completion {m['completion_pct']:.0f}%, best lap {lap_s}, "
        f"off track {m['off_track_count']}x ({m['source']}, lights dimmed)"
    )


def _decision(c: Canary) -> str:
    [f] = c.canary_figures or [None]
    base = c.baseline_figures[0] if c.baseline_figures else None
    figures = (
        f"{f.car}: {f.laps} laps, median {f.median_lap_s} s, off track {f.off_track}x in {f.minutes:.2f} min"
        if f
        else "no figures"
    )
    vs = f"; group {base.car}: median {base.median_lap_s} s" if base else ""
    return f"{figures}{vs}" + (f" -- {'; '.join(c.reasons)}" if c.reasons else "")


async def _canary(http: httpx.AsyncClient, version: str, tl: Timeline, force: bool = False) -> Canary:
    body = {"model": {"name": "pilot", "version": version}, "group": "fleet", "force": force}
    r = await http.post("/canaries", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    c = Canary.model_validate(r.json())
    tl.mark(
        f"canary started{' (forced)' if force else ''}",
        f"pilot:{version} on {c.cars[0]} for {c.window_s:g} s",
    )

    async def decided() -> Canary | None:
        now = Canary.model_validate((await http.get(f"/canaries/{c.id}")).json())
        return now if now.state != "running" else None

    result: Canary = await until(decided, "the canary's decision", timeout=WINDOW_S + 60)
    await until(
        lambda: _active(http, f"pilot:{version}" if result.state == "promoted" else result.baseline),
        "the fleet after the decision",
    )
    return result


def plot(tl: Timeline, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 0.42 * len(tl.rows) + 1.2))
    for i, (t, step, _) in enumerate(tl.rows):
        colour = (
            "tab:red"
            if "rolled" in step or "409" in step or "drift" in step
            else "tab:green"
            if "promoted" in step
            else "tab:blue"
        )
        ax.plot([t], [i], "o", color=colour)
        ax.annotate(f"{t:.0f} s  {step}", (t, i), xytext=(6, -3), textcoords="offset points", fontsize=8)
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the scenario started (first: training the pilot, starting the hub and cars)")
    ax.set_xlim(0, max(t for t, _, _ in tl.rows) * 1.35)
    ax.set_title("paddock MLOps loop: drift, retrain trigger, gate, canary")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(out: Path | None = None) -> Timeline:
    print("\nMLOps loop scenario (two simulated cars at 4x on the oval, one busy machine)")
    with Broker() as url, tempfile.TemporaryDirectory() as tmp:
        tl = asyncio.run(scenario(url, Path(tmp)))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot(tl, out / "mlops_timeline.png")
        print(f"timeline plot: {out / 'mlops_timeline.png'}")
    return tl


def test_bench_mlops_loop(tmp_path: Path) -> None:
    steps = [step for _, step, _ in run(tmp_path).rows]
    assert "drift raised" in steps and "canary promoted" in steps and "canary rolled_back" in steps
    assert (tmp_path / "mlops_timeline.png").stat().st_size > 0


if __name__ == "__main__":
    args = sys.argv[1:]
    run(Path(args[args.index("--out") + 1]) if "--out" in args else None)
