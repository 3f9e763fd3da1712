"""The MLOps loop as a scenario, with no human action between the lighting change and the decision:
Mosquitto, a hub, a trainer agent and two simulated cars on the oval. The cars first record laps of
the simulator's expert (the group model's dataset, ``laps``), then drive on autopilot on the group's
model, whose card holds its training input statistics. The lights dim and the colours change on
both cars; the hub raises drift (goal: within 60 s); the cars capture the drifted frames
(feedback, sent although they are not recording); the feedback-volume trigger queues a train job
on ``laps-with-feedback``; the trainer agent takes it, trains, evaluates it in the simulator,
registers it with its lineage (why it ran) and smoke-tests it as a car would; the hub
(``auto_deploy = "canary"``) gates it against the current model, tries it on one car and promotes
it (or rolls it back). Then a deliberately bad candidate (it steers hard left all the time) is
deployed to the group the way an operator would, ``POST /deployments``: the group is a canary group,
the gate refuses it with the figures, and, forced past the gate, the canary rolls it back.

Prints the timeline with every step's time and figures, and plots it. The group's first model is a
small network trained in the test (tests/edge/trained.py), so that only the retraining waits on the
trainer. The gate compares closed-loop laps in the simulator under the usual lights (the trainer
evaluates there), so the scenario's tolerances for lap times are wider than the defaults: the cars
drive under dimmed lights, where both models lap slower than in their evaluations.

    python -m pytest tests/bench/bench_mlops_loop.py -s -p no:cacheprovider -o python_files='bench_*.py'
    python -m tests.bench.bench_mlops_loop [--out DIR]

``tests/hub/test_mlops_loop.py`` runs the same scenario reduced (fewer frames, epochs, a shorter window).
"""

import asyncio
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deploy import smoke
from firmware.sim import Randomization
from hub import HubConfig, HubService
from hub.mlops.canary import Canary
from hub.mlops.gate import figures_of
from tests.bench.bench_edge_loop import Broker
from tests.edge.harness import RecordingDaemon
from tests.edge.modelkit import onnx_model
from tests.edge.trained import CARD, tiny_pilot
from tests.hub.conftest import signed_sim_car
from tests.hub.test_canary import AUTH, CARS, active, decision, deploy, register, until
from tests.hub.test_mlops import sim_stats
from trainer.agent import AgentSettings, TrainerAgent

DIMMED = Randomization(enabled=True, brightness=(0.45, 0.45))  # the lights dim, the colours change


@dataclass(frozen=True)
class Scale:
    """How big the scenario is: the full benchmark, or the reduced test."""

    record_s: float = 10.0  # seconds of expert laps each car records (at 4x: 40 s of driving)
    epochs: int = 8
    feedback_frames: int = 150  # feedback frames that trigger the retraining
    window_s: float = 30.0  # the canary's window
    train_timeout_s: float = 900.0


FULL = Scale()


class Timeline:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.rows: list[tuple[float, str, str]] = []
        self.decisions: list[Canary] = []  # the canaries decided, in order

    def mark(self, step: str, figures: str = "") -> None:
        t = time.monotonic() - self.t0
        self.rows.append((t, step, figures))
        print(f"  {t:7.1f} s  {step:<34} {figures}", flush=True)


def hub_config(url: str, tmp: Path, scale: Scale) -> HubConfig:
    uid = uuid.uuid4().hex[:8]
    return HubConfig.from_dict(
        {
            "data_dir": str(tmp / "hub"),
            "topic_prefix": f"b{uid}",
            "mqtt": {"url": url, "client_id": f"hub-{uid}", "connect_wait_s": 10},
            "api": {"port": 0, "token": AUTH["Authorization"].split()[1]},
            "shards": {"idle_seal_s": 0.5, "session_close_s": 30},
            "mlops": {
                "gate": True,
                "gate_smoke_test": True,
                "gate_lap_time_tolerance": 0.3,
                "auto_deploy": "canary",
                "canary_groups": ["fleet"],
                "feedback_scan_s": 2,
                "retrain_on_feedback_frames": scale.feedback_frames,
                "retrain_epochs": scale.epochs,
                "retrain_options": {"model": {"width": 80, "height": 40, "crop_top": 40}, "batch_size": 64},
                "retrain_evaluate_track": "oval",
                "retrain_evaluate_laps": 1,
                "canary_window_s": scale.window_s,
                "canary_max_incidents": 4,
                "canary_lap_time_tolerance": 0.2,
                "canary_evaluation_tolerance": 0.6,
            },
        }
    )


def car_config(tmp: Path, hub: HubService, car: str) -> Any:
    feedback = {
        "enabled": True,
        "events": ["drifted_input"],
        "before_s": 1,
        "after_s": 3,
        "min_interval_s": 4,
    }
    return signed_sim_car(
        tmp, hub, car, publish={"telemetry_hz": 5}, feedback=feedback, sim={"expert_noise": 0.25}
    )


def trainer_agent(url: str, tmp: Path, hub: HubService) -> TrainerAgent:
    settings = AgentSettings(
        store=hub.store.url,
        work_dir=str(tmp / "trainer"),
        broker=url,
        topic_prefix=hub.config.topic_prefix,
        hub=hub.api_url,
        hub_token=hub.api_token,
        export_formats=["onnx"],
        client_id=f"trainer-{uuid.uuid4().hex[:8]}",
        progress_bar=False,
        job_timeout_s=1800,
    )
    return TrainerAgent(settings, after_train=smoke.after_train(hub.api_url, hub.api_token))


async def scenario(url: str, tmp: Path, scale: Scale = FULL) -> Timeline:
    tl = Timeline()
    card = CARD.model_copy(update={"input_stats": sim_stats(0.0, frames=24)})
    pilot = await asyncio.to_thread(tiny_pilot)
    async with HubService(hub_config(url, tmp, scale)) as hub, AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=hub.api_url, timeout=30))
        agent = trainer_agent(url, tmp, hub).start()
        stack.callback(agent.stop)
        assert await asyncio.to_thread(agent.subscribed.wait, 30), "the trainer agent did not subscribe"
        cars = [await stack.enter_async_context(RecordingDaemon(car_config(tmp, hub, c))) for c in CARS]
        frames = await record_expert_laps(hub, http, cars, scale.record_s)
        tl.mark("expert laps recorded", f"dataset laps: {frames} frames of {len(cars)} cars")

        v1 = await register(http, hub, pilot, card, dataset="laps")
        await smoke_test(http, v1)  # as `paddock hub smoke-test` does
        r = await deploy(http, v1)
        assert r.status_code == 201 and r.json()["canary"] is None, r.text  # the group's first model
        for car in cars:
            car.set_autopilot("model")
        await until(lambda: active(http, f"pilot:{v1}"), "the fleet on the group's model")
        await asyncio.sleep(6)
        tl.mark(
            "fleet on autopilot", f"pilot:{v1} on {', '.join(CARS)}; PSI {_psi(hub)}; {_evaluation(hub, v1)}"
        )

        for car in cars:
            car.body.sim.world.renderer.randomize(np.random.default_rng(3), DIMMED)
        tl.mark("lights dim, colours change")
        changed = time.monotonic()
        await until(lambda: _events(http, "drift"), "drift", timeout=90)
        tl.mark(
            "drift raised",
            f"{time.monotonic() - changed:.1f} s after the change (goal <= 60); PSI {_psi(hub)}",
        )
        [job] = await until(lambda: _jobs(hub), "a triggered train job", timeout=120)
        fb = (await http.get("/feedback")).json()["train"]
        tl.mark(
            "feedback captured", f"{len(fb)} drifted-input captures from the cars, {_frames(hub, fb)} frames"
        )
        request = job["request"]
        tl.mark(
            "train job queued", f"{job['job']} on {request['params']['dataset']}: {request['requested_by']}"
        )
        await until(lambda: _job_state(http, job["job"], "running"), "the trainer taking the job")
        tl.mark(
            "trainer took the job",
            f"{request['params']['epochs']} epochs, {request['params']['architecture']}",
        )
        result = await until(
            lambda: _job_done(http, job["job"]), "the train job", timeout=scale.train_timeout_s
        )
        assert result["status"] == "succeeded", result.get("error")
        good = result["model"]["version"]
        tl.mark("candidate registered", _registered(hub, good, result))
        release = await until(lambda: _released(http, job["job"]), "the release of the job's model")
        tl.mark("smoke test (trainer agent)", _smoke(release))
        if release["state"] == "refused":
            tl.mark("gate: refused", "; ".join(release["reasons"]))
            return tl
        [canary_id] = release["canaries"]
        started = Canary.model_validate((await http.get(f"/canaries/{canary_id}")).json())
        tl.mark(
            "gate passed, canary started",
            f"{_evaluation(hub, good)}; on {started.cars[0]} for {started.window_s:g} s",
        )
        promoted = await _decision(http, started, tl, scale)
        tl.mark(f"canary {promoted.state}", _decided(promoted))
        await bad_candidate(hub, http, card, tl, scale)
        group = (await http.get("/deployments/group/fleet")).json()["current"]
        tl.mark("group stays on", f"pilot:{group['version']}")
    return tl


async def bad_candidate(
    hub: HubService, http: httpx.AsyncClient, card: Any, tl: Timeline, scale: Scale
) -> None:
    """An operator deploys a pilot that steers hard left all the time to the (canary) group."""
    lefty = onnx_model(width=80, height=60, steering=-1.0, throttle=0.5)
    bad = await register(http, hub, lefty, card, dataset="laps")
    await smoke_test(http, bad)
    tl.mark("bad candidate registered", _evaluation(hub, bad))
    refused = await deploy(http, bad)
    tl.mark(
        f"POST /deployments: {refused.status_code}", "; ".join(refused.json()["detail"]["gate"]["reasons"])
    )
    forced = await deploy(http, bad, force=True)
    assert forced.status_code == 201, forced.text
    canary = Canary.model_validate(forced.json()["canary"])
    tl.mark(
        "forced: canary started",
        f"pilot:{bad} on {canary.cars[0]} for {canary.window_s:g} s (forced recorded)",
    )
    rolled = await _decision(http, canary, tl, scale)
    tl.mark(f"canary {rolled.state}", _decided(rolled))


async def record_expert_laps(
    hub: HubService, http: httpx.AsyncClient, cars: list[Any], seconds: float
) -> int:
    """Each car records the simulator's expert (with steering noise, so it also shows recoveries);
    the sessions become the dataset ``laps``."""
    await until(lambda: all(c.link.connected.is_set() for c in cars), "the cars online")
    for car in cars:
        car.set_autopilot("expert")
    sessions = [car.start_recording() for car in cars]
    await asyncio.sleep(seconds)
    for car in cars:
        car.stop_recording()
    frames = 0
    for car, session in zip(cars, sessions, strict=True):
        manifest = await hub.wait_sealed(car.config.car.id, session, timeout=60)
        frames += manifest.frame_count
    train = [{"car": car.config.car.id, "session": s} for car, s in zip(cars, sessions, strict=True)]
    r = await http.post("/datasets", json={"name": "laps", "train": train, "val": []}, headers=AUTH)
    assert r.status_code == 201, r.text
    return frames


async def smoke_test(http: httpx.AsyncClient, version: str) -> None:
    row = (await http.get(f"/models/pilot/{version}")).json()
    r = await http.get(f"/models/pilot/{version}/artifact", headers=AUTH)
    assert r.status_code == 200, r.text
    data = r.content
    result = await asyncio.to_thread(smoke.run_smoke_test, row, data, smoke.DEFAULT_LATENCY_MS)
    r = await http.post(f"/models/pilot/{version}/smoke-tests", json=result, headers=AUTH)
    assert r.status_code in (200, 201) and result["passed"], (r.text, result)


async def _events(http: httpx.AsyncClient, kind: str) -> list[Any]:
    out = []
    for car in CARS:
        out += (await http.get(f"/cars/{car}/events", params={"type": kind})).json()
    return out


async def _jobs(hub: HubService) -> list[Any]:
    return hub.catalog.list_jobs("train")


async def _job_state(http: httpx.AsyncClient, job: str, state: str) -> bool:
    entry = (await http.get(f"/jobs/{job}", params={"history": 0})).json()
    return bool(entry["state"] == state or entry.get("result"))


async def _job_done(http: httpx.AsyncClient, job: str) -> dict[str, Any] | None:
    entry = (await http.get(f"/jobs/{job}", params={"history": 0})).json()
    result: dict[str, Any] | None = entry.get("result")
    return result if result and entry["state"] in ("succeeded", "failed") else None


async def _released(http: httpx.AsyncClient, job: str) -> dict[str, Any] | None:
    for r in (await http.get("/releases")).json():
        if r["job"] == job and r["state"] != "waiting":
            return dict(r)
    return None


def _frames(hub: HubService, sessions: list[dict[str, str]]) -> int:
    rows = [hub.catalog.get_session(s["car"], s["session"]) for s in sessions]
    return sum(int(r["frame_count"]) for r in rows if r)


def _psi(hub: HubService) -> str:
    return ", ".join(f"{r.car} {r.drift_score:.3f}" for r in hub.monitor.rows() if r.drift_score is not None)


def _registered(hub: HubService, version: str, result: dict[str, Any]) -> str:
    lineage = (hub.catalog.get_model("pilot", version) or {}).get("lineage") or {}
    m = result["metrics"]
    return (
        f"pilot:{version} in {result.get('duration_s', 0):.0f} s on {lineage.get('dataset')} "
        f"({len(lineage.get('sessions') or [])} sessions); "
        f"steering MAE {m.get('steering_mae', float('nan')):.3f}; "
        f"lineage: {lineage.get('requested_by')}"
    )


def _smoke(release: dict[str, Any]) -> str:
    s = release.get("smoke_test") or {}
    if not s:
        return "none recorded"
    return (
        f"passed, {s.get('latency_ms')} ms ({s.get('runtime')})"
        if s["passed"]
        else f"failed: {s.get('reason')}"
    )


def _evaluation(hub: HubService, version: str) -> str:
    figures = figures_of(hub.catalog, "pilot", version)
    assert figures is not None
    m = figures.model_dump()
    lap = m["best_lap_time_s"]
    lap_s = f"{lap:.2f} s" if lap else "none"
    return (
        f"pilot:{version}: completion {m['completion_pct']:.0f}%, best lap {lap_s}, "
        f"off track {m['off_track_count']}x ({m['source']})"
    )


def _decided(c: Canary) -> str:
    [f] = c.canary_figures or [None]
    base = c.baseline_figures[0] if c.baseline_figures else None
    figures = (
        f"{f.car}: {f.laps} laps, median {f.median_lap_s} s, off track {f.off_track}x in {f.minutes:.2f} min"
        if f
        else "no figures"
    )
    vs = f"; group {base.car}: median {base.median_lap_s} s" if base else ""
    return f"{figures}{vs}" + (f" -- {'; '.join(c.reasons)}" if c.reasons else "")


async def _decision(http: httpx.AsyncClient, c: Canary, tl: Timeline, scale: Scale) -> Canary:
    result = await decision(http, c.id, scale.window_s + 60)
    tl.decisions.append(result)
    model = c.model if result.state == "promoted" else result.baseline
    await until(lambda: active(http, model), "the fleet after the decision")
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
    ax.set_xlabel("seconds since the scenario started (first: the group's pilot, the hub, cars, expert laps)")
    ax.set_xlim(0, max(t for t, _, _ in tl.rows) * 1.35)
    ax.set_title("paddock MLOps loop: drift, feedback, retraining, smoke test, gate, canary")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(out: Path | None = None, scale: Scale = FULL) -> Timeline:
    print("\nMLOps loop scenario (two simulated cars at 4x on the oval, a trainer agent, one busy machine)")
    with Broker() as url, tempfile.TemporaryDirectory() as tmp:
        tl = asyncio.run(scenario(url, Path(tmp), scale))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot(tl, out / "mlops_timeline.png")
        print(f"timeline plot: {out / 'mlops_timeline.png'}")
    return tl


def test_bench_mlops_loop(tmp_path: Path) -> None:
    steps = [step for _, step, _ in run(tmp_path).rows]
    assert "drift raised" in steps and "canary promoted" in steps and "canary rolled_back" in steps
    assert "POST /deployments: 409" in steps
    assert (tmp_path / "mlops_timeline.png").stat().st_size > 0


if __name__ == "__main__":
    args = sys.argv[1:]
    run(Path(args[args.index("--out") + 1]) if "--out" in args else None)
