"""``paddock demo``: the whole loop on one machine — record, train, deploy over MQTT, hot-swap, race.

Stages, each against the real parts of a :class:`~deploy.stack.LocalStack`:

1. **record** — every car drives with the simulator's expert and records ``record_laps`` laps,
   started and stopped by commands through the hub's REST API; the hub persists the frames and
   seals the sessions, and the demo checks every recorded frame arrived.
2. **train** — a dataset of those sessions and a train job go through the hub; the trainer agent
   receives the job over MQTT, trains, evaluates in the simulator, exports ONNX and registers the
   model with the hub.
3. **deploy** — the hub signs the model and publishes it retained to the cars' group; each car
   verifies it, loads it off its control loop and swaps it in between two ticks, still driving.
4. **race** — the cars drive on the new model until each has ``race_laps`` laps of its own.

The report (JSON, plots, a video of one autonomous lap) goes to ``{directory}/report``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from deploy.stack import LocalStack, StackConfig
from schemas.messages import TrainParams
from trainer.pipeline import EXPORT_FORMATS

MARKER = ".paddock-demo"


class DemoError(RuntimeError):
    """A stage could not complete; the message says which and why."""


@dataclass
class DemoOptions:
    """Settings of one demo run (``paddock demo --help`` documents each)."""

    cars: int = 2
    track: str = "oval"
    record_laps: int = 2
    race_laps: int = 2
    epochs: int = 16
    directory: Path = Path("paddock-demo")
    broker: str | None = None
    keep: bool = False
    seed: int = 0
    video: bool = True
    stage_timeout_s: float = 900.0
    evaluate_laps: int = 3
    """Closed-loop laps in the simulator before the model is registered."""
    export_formats: tuple[str, ...] = field(default_factory=lambda: available_export_formats())
    """What the trainer exports (the cars drive the ONNX file; TFLite when the `tflite` extra is in)."""

    def __post_init__(self) -> None:
        if not 1 <= self.cars <= 8:
            raise ValueError(f"--cars must be between 1 and 8, got {self.cars}")
        if not 1 <= self.record_laps <= 20:
            raise ValueError(f"--record-laps must be between 1 and 20, got {self.record_laps}")
        if not 1 <= self.race_laps <= 20:
            raise ValueError(f"--race-laps must be between 1 and 20, got {self.race_laps}")
        if not 1 <= self.epochs <= 500:
            raise ValueError(f"--epochs must be between 1 and 500, got {self.epochs}")


def available_export_formats() -> tuple[str, ...]:
    """Every export format this installation can write: TFLite only with the `tflite` extra."""
    have_litert = importlib.util.find_spec("litert_torch") is not None
    return tuple(f for f in EXPORT_FORMATS if f != "tflite" or have_litert)


# --- what the display and the report show ---------------------------------------------------------
@dataclass
class Lap:
    lap: int
    time_s: float
    pilot: str
    ended: float  # monotonic time the lap ended
    off_track: int = 0


@dataclass
class CarProgress:
    car: str
    pilot: str = "—"
    session: str | None = None
    recorded: int = 0
    persisted: int = 0
    missing: int = 0
    laps: list[Lap] = field(default_factory=list)
    off_track: int = 0
    off_track_autopilot: int = 0
    swap_ms: float | None = None
    load_ms: float | None = None
    autopilot_since: float | None = None  # monotonic time the model took over

    def expert_laps(self) -> list[Lap]:
        return [lap for lap in self.laps if lap.pilot == "expert"]

    def autopilot_laps(self) -> list[Lap]:
        """Laps driven by the model from start to finish (not the one it took over halfway)."""
        since = self.autopilot_since
        if since is None:
            return []
        return [lap for lap in self.laps if lap.pilot == "model" and lap.ended - lap.time_s >= since - 0.05]


@dataclass
class Stage:
    name: str
    title: str
    state: str = "waiting"  # waiting, running, done, failed
    started: float | None = None
    ended: float | None = None
    detail: str = ""

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.monotonic()) - self.started


class Demo:
    def __init__(self, options: DemoOptions, console: Console | None = None) -> None:
        self.options = options
        self.console = console or Console()
        self.root = options.directory.resolve()
        self.stages = {
            s.name: s
            for s in (
                Stage("start", "start the stack"),
                Stage("record", f"record {options.record_laps} expert laps per car"),
                Stage("train", "train, evaluate and register a model"),
                Stage("deploy", "sign, deploy and hot-swap"),
                Stage("race", f"race {options.race_laps} autonomous laps per car"),
            )
        }
        self.cars: dict[str, CarProgress] = {}
        self.training: dict[str, Any] = {}
        self.log: list[str] = []
        self.t0 = time.monotonic()
        self.first_autonomous_lap_s: float | None = None
        self.stack: LocalStack | None = None
        self.api: httpx.AsyncClient | None = None
        self.result: dict[str, Any] = {}
        self._frames: list[tuple[float, np.ndarray, float, float, str]] = []
        self._traces: dict[str, list[tuple[float, float, float]]] = {}
        self._lock_fd: int | None = None

    # --- the run ----------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        """Run every stage; return the report (also written to ``{directory}/report``)."""
        self._prepare_directory()
        # Every part's log lines go to one file; the terminal shows the live display only.
        log_handler = logging.FileHandler(self.root / "demo.log", encoding="utf-8")
        log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root_logger = logging.getLogger()
        saved_level = root_logger.level
        root_logger.addHandler(log_handler)
        root_logger.setLevel(logging.INFO)
        try:
            with self._display() as refresh:
                self._refresh = refresh
                stack_config = StackConfig(
                    root=self.root / "stack",
                    cars=self.options.cars,
                    track=self.options.track,
                    broker_url=self.options.broker,
                    seed=self.options.seed,
                    export_formats=list(self.options.export_formats),
                )
                self._begin("start")
                async with LocalStack(stack_config) as stack:
                    self.stack = stack
                    assert stack.hub is not None
                    self.api = httpx.AsyncClient(
                        base_url=stack.hub.api_url,
                        headers={"Authorization": f"Bearer {stack.hub.api_token}"},
                        timeout=30,
                    )
                    for car, daemon in stack.cars.items():
                        self.cars[car] = CarProgress(car)
                        daemon.event_listeners.append(self._listener(car))
                    self._end("start", f"hub {stack.hub.api_url}, broker {stack.broker_url}")
                    await self._stage("record", self._record)
                    await self._stage("train", self._train)
                    await self._stage("deploy", self._deploy)
                    await self._stage("race", self._race)
                    self.result = self._report()
                    await asyncio.to_thread(self._write_outputs)
                    refresh()
                    if self.options.keep:
                        await self._keep_running()
                    await self.api.aclose()
            return self.result
        finally:
            root_logger.removeHandler(log_handler)
            root_logger.setLevel(saved_level)
            log_handler.close()
            self._release_directory()

    async def _stage(self, name: str, fn: Callable[[], Awaitable[str]]) -> None:
        self._begin(name)
        try:
            detail = await asyncio.wait_for(fn(), self.options.stage_timeout_s)
        except TimeoutError:
            self._fail(name, f"timed out after {self.options.stage_timeout_s:.0f} s")
            raise DemoError(f"stage '{name}' timed out after {self.options.stage_timeout_s:.0f} s") from None
        except DemoError as exc:
            self._fail(name, str(exc))
            raise
        except asyncio.CancelledError:
            self._fail(name, "interrupted")
            raise
        self._end(name, detail)

    # --- 1. record --------------------------------------------------------------------------------
    async def _record(self) -> str:
        laps = self.options.record_laps
        for car in self.cars:
            data = await self._command(car, "record", {"action": "start"})
            self.cars[car].session = data["session"]
            await self._command(car, "config", {"values": {"pilot": "expert"}})
            self.cars[car].pilot = "expert"
            self._say(f"{car}: recording session {data['session']} with the expert driving")
        await self._until(lambda: all(len(c.expert_laps()) >= laps for c in self.cars.values()))
        assert self.stack is not None and self.stack.hub is not None
        for car, progress in self.cars.items():
            data = await self._command(car, "record", {"action": "stop"})
            progress.recorded = int(data.get("frames", 0))
        for car, progress in self.cars.items():
            assert progress.session is not None
            manifest = await self.stack.hub.wait_sealed(car, progress.session, timeout=120)
            progress.persisted = manifest.frame_count
            progress.missing = manifest.missing + max(0, progress.recorded - manifest.frame_count)
            self._say(
                f"{car}: {progress.recorded} frames recorded, {manifest.frame_count} in "
                f"{len(manifest.shards)} shards, {progress.missing} lost"
            )
        recorded = sum(c.recorded for c in self.cars.values())
        lost = sum(c.missing for c in self.cars.values())
        if recorded == 0:
            raise DemoError("no frames were recorded")
        return f"{recorded} frames recorded, {lost} lost"

    # --- 2. train ---------------------------------------------------------------------------------
    async def _train(self) -> str:
        opts = self.options
        stamp = time.strftime("%Y%m%d-%H%M%S")
        sessions = [{"car": c.car, "session": c.session} for c in self.cars.values()]
        # Every session trains: with a handful of sessions a held-out one would cost a third of the
        # data; the closed-loop evaluation in the simulator is the test that matters here.
        dataset = await self._post("/datasets", {"name": f"demo-{stamp}", "train": sessions, "val": []})
        params = TrainParams(
            dataset=dataset["name"],
            architecture="mobilenet",
            epochs=opts.epochs,
            batch_size=64,
            learning_rate=1e-3,
            seed=opts.seed,
            model_name="pilot",
            model_version=stamp,
            evaluate_track=opts.track if opts.evaluate_laps else None,
            evaluate_laps=opts.evaluate_laps,
            options={"model": {"width": 80, "height": 40, "crop_top": 40}},
        )
        job = await self._post("/jobs", {"kind": "train", "params": params.to_dict()})
        job_id = job["job"]
        self.training = {"job": job_id, "dataset": dataset["name"], "state": "queued"}
        self._say(f"train job {job_id} sent to the trainer agent over MQTT")
        assert self.api is not None
        while True:
            await asyncio.sleep(0.5)
            r = await self.api.get(f"/jobs/{job_id}", params={"history": 0})
            r.raise_for_status()
            entry = r.json()
            progress = entry.get("progress") or {}
            self.training.update(
                state=entry["state"],
                stage=progress.get("stage", ""),
                epoch=progress.get("epoch"),
                epochs=progress.get("epochs"),
                loss=progress.get("loss"),
                val_loss=progress.get("val_loss"),
            )
            result = entry.get("result")
            if result and entry["state"] in ("succeeded", "failed"):
                break
        if result["status"] != "succeeded":
            raise DemoError(f"training failed: {result.get('error')}")
        model = result.get("model")
        if not model:
            raise DemoError("the train job succeeded but registered no model")
        self.training["result"] = result
        metrics = result.get("metrics", {})
        self._say(
            f"model {model['name']}:{model['version']} registered; simulator evaluation: "
            f"{metrics.get('completion_pct', float('nan')):.0f}% completion"
        )
        return f"{model['name']}:{model['version']} in {result.get('duration_s', 0):.0f} s"

    # --- 3. deploy --------------------------------------------------------------------------------
    async def _deploy(self) -> str:
        model = self.training["result"]["model"]
        assert self.stack is not None
        group = self.stack.config.group
        out = await self._post("/deployments", {"model": model, "group": group})
        if not out.get("published"):
            raise DemoError("the broker did not acknowledge the retained model")
        self._say(f"model signed and published retained to group '{group}'")
        await self._until(lambda: all(c.swap_ms is not None for c in self.cars.values()), 120, "the hot-swap")
        for car, progress in self.cars.items():
            await self._command(car, "config", {"values": {"pilot": "model"}})
            progress.pilot = "model"
            progress.autopilot_since = time.monotonic()
        swaps = ", ".join(f"{c.car} {c.swap_ms:.0f} ms" for c in self.cars.values())
        return f"hot-swapped while driving ({swaps} from arrival to first tick)"

    # --- 4. race ----------------------------------------------------------------------------------
    async def _race(self) -> str:
        laps = self.options.race_laps
        sampler = asyncio.create_task(self._sample_race())
        try:
            await self._until(lambda: all(len(c.autopilot_laps()) >= laps for c in self.cars.values()))
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        best = min(lap.time_s for c in self.cars.values() for lap in c.autopilot_laps())
        return f"best autonomous lap {best:.2f} s"

    async def _sample_race(self) -> None:
        """Keep the cars' positions (for the map) and one car's camera during its first full lap."""
        assert self.stack is not None
        first = next(iter(self.stack.cars))
        fps = 15.0
        while True:
            for car, daemon in self.stack.cars.items():
                body = daemon.body
                state = body.state() if body is not None else None
                if state is None:
                    continue
                x, y = state.extra.get("x"), state.extra.get("y")
                if x is not None and y is not None:
                    self._traces.setdefault(car, []).append((float(x), float(y), float(state.speed or 0)))
                progress = self.cars[car]
                # One car's camera, from the take-over until its first full autonomous lap ends;
                # the report keeps the frames of that lap.
                filming = (
                    car == first
                    and self.options.video
                    and progress.autopilot_since is not None
                    and not progress.autopilot_laps()
                )
                if filming and body is not None:
                    with contextlib.suppress(Exception):
                        frame = body.camera.read_latest(500)
                        hud = f"{car} autopilot  lap {state.lap}  {state.speed or 0:.1f} m/s"
                        self._frames.append(
                            (time.monotonic(), frame.image.copy(), float(x or 0), float(y or 0), hud)
                        )
            await asyncio.sleep(1 / fps)

    # --- events from the cars ---------------------------------------------------------------------
    def _listener(self, car: str) -> Callable[[dict[str, Any]], None]:
        def on_event(event: dict[str, Any]) -> None:
            progress = self.cars.get(car)
            if progress is None:
                return
            kind = event.get("type")
            if kind == "lap":
                lap = Lap(
                    lap=int(event.get("lap", 0)),
                    time_s=float(event.get("lap_time_s", 0.0)),
                    pilot=progress.pilot,
                    ended=time.monotonic(),
                    off_track=int(event.get("off_track_count", 0)),
                )
                progress.laps.append(lap)
                if (
                    self.first_autonomous_lap_s is None
                    and progress.autopilot_since is not None
                    and lap in progress.autopilot_laps()
                ):
                    self.first_autonomous_lap_s = time.monotonic() - self.t0
                    self._say(
                        f"{car}: first autonomous lap, {lap.time_s:.2f} s — "
                        f"{self.first_autonomous_lap_s:.0f} s after the demo started"
                    )
            elif kind == "off_track":
                progress.off_track += 1
                if progress.autopilot_since is not None:
                    progress.off_track_autopilot += 1
            elif kind == "model_swapped":
                progress.swap_ms = float(event.get("swap_ms", 0.0))
                progress.load_ms = float(event.get("load_ms", 0.0))
                self._say(f"{car}: swapped to {event.get('name')}:{event.get('version')} while driving")
            elif kind == "model_rejected":
                self._say(f"{car}: rejected a model: {event.get('reason')}")

        return on_event

    # --- the hub's API ----------------------------------------------------------------------------
    async def _post(self, path: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
        assert self.api is not None
        r = await self.api.post(path, json=body, params=params)
        if r.status_code >= 400:
            raise DemoError(f"POST {path} failed ({r.status_code}): {r.text[:300]}")
        data: dict[str, Any] = r.json()
        return data

    async def _command(self, car: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send a command through the hub and wait for the car's answer."""
        out = await self._post(f"/cars/{car}/commands/{name}", body, wait=10)
        response = out.get("response")
        if response is None:
            raise DemoError(f"{car} did not answer the {name} command")
        if response.get("status") != "ok":
            raise DemoError(f"{car} refused {name}: {response.get('error')}")
        data: dict[str, Any] = response.get("data") or {}
        return data

    async def _until(
        self, done: Callable[[], bool], within_s: float | None = None, what: str = "the cars"
    ) -> None:
        deadline = time.monotonic() + (within_s or self.options.stage_timeout_s)
        while not done():
            if time.monotonic() > deadline:
                raise DemoError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)

    # --- --keep -------------------------------------------------------------------------------------
    async def _keep_running(self) -> None:
        assert self.stack is not None
        info = self.stack.describe()
        creds = info["operator_credentials"]
        self.console.print(
            f"\n[bold]The stack keeps running[/] (Ctrl-C stops it):\n"
            f"  hub API   {info['api']}  (OpenAPI: {info['api_docs']})\n"
            f"  token     {info['api_token_file']}\n"
            f"  broker    {info['broker']}" + (f"  (operator credentials: {creds})" if creds else "") + "\n"
            f"  store     {info['store']}\n"
            f"  cars      {', '.join(info['cars'])} (driving on the deployed model)"
        )
        await asyncio.Event().wait()

    # --- the working directory ----------------------------------------------------------------------
    def _prepare_directory(self) -> None:
        """Lock the demo directory and clear a previous run's state (only a demo's own directory)."""
        root = self.root
        if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
            raise DemoError(f"{root} exists and is not a paddock demo directory; choose another --directory")
        root.mkdir(parents=True, exist_ok=True)
        (root / MARKER).write_text("a paddock demo directory: `paddock demo` replaces its contents\n")
        fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DemoError(f"another demo is running in {root} (see {root / '.lock'})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        for child in root.iterdir():
            if child.name in (MARKER, ".lock"):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def _release_directory(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- the report ---------------------------------------------------------------------------------
    def _report(self) -> dict[str, Any]:
        cars: dict[str, Any] = {}
        assert self.stack is not None and self.stack.hub is not None
        for car, p in self.cars.items():
            cars[car] = {
                "session": p.session,
                "frames_recorded": p.recorded,
                "frames_persisted": p.persisted,
                "frames_lost": p.missing,
                "expert_lap_times_s": [round(lap.time_s, 3) for lap in p.expert_laps()],
                "autopilot_lap_times_s": [round(lap.time_s, 3) for lap in p.autopilot_laps()],
                "off_track_autopilot": p.off_track_autopilot,
                "hot_swap_ms": p.swap_ms,
                "model_load_ms": p.load_ms,
            }
        expert = [t for c in cars.values() for t in c["expert_lap_times_s"]]
        auto = [t for c in cars.values() for t in c["autopilot_lap_times_s"]]
        result = self.training.get("result", {})
        return {
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.options).items()},
            "stages_s": {s.name: round(s.seconds or 0.0, 2) for s in self.stages.values()},
            "total_s": round(time.monotonic() - self.t0, 2),
            "time_to_first_autonomous_lap_s": (
                round(self.first_autonomous_lap_s, 2) if self.first_autonomous_lap_s else None
            ),
            "laps": {
                "expert_mean_s": round(float(np.mean(expert)), 3) if expert else None,
                "autopilot_mean_s": round(float(np.mean(auto)), 3) if auto else None,
                "autopilot_best_s": round(min(auto), 3) if auto else None,
                "autopilot_completed": len(auto),
                "off_track_autopilot": sum(c["off_track_autopilot"] for c in cars.values()),
            },
            "frames": {
                "recorded": sum(c["frames_recorded"] for c in cars.values()),
                "persisted": sum(c["frames_persisted"] for c in cars.values()),
                "lost": sum(c["frames_lost"] for c in cars.values()),
            },
            "cars": cars,
            "model": result.get("model"),
            "training": {
                "job": self.training.get("job"),
                "dataset": self.training.get("dataset"),
                "duration_s": result.get("duration_s"),
                "metrics": result.get("metrics", {}),
                "artifacts": result.get("artifacts", {}),
            },
        }

    def _write_outputs(self) -> None:
        from deploy.demo_report import write_report

        assert self.stack is not None
        frames = []
        first = self.cars[next(iter(self.cars))].autopilot_laps()
        if first:
            start, end = first[0].ended - first[0].time_s, first[0].ended
            frames = [f[1:] for f in self._frames if start - 0.1 <= f[0] <= end + 0.1]
        write_report(
            self.root / "report",
            self.result,
            track=self.options.track,
            traces=self._traces,
            frames=frames,
            store=self.stack.store_dir,
        )
        self._say(f"report written to {self.root / 'report'}")

    # --- the live display ---------------------------------------------------------------------------
    def _begin(self, name: str) -> None:
        stage = self.stages[name]
        stage.state, stage.started = "running", time.monotonic()
        if not self.console.is_terminal:
            self.console.print(f"[bold]▶ {stage.title}[/]")

    def _end(self, name: str, detail: str) -> None:
        stage = self.stages[name]
        stage.state, stage.ended, stage.detail = "done", time.monotonic(), detail
        if not self.console.is_terminal:
            self.console.print(f"  ✓ {stage.title} ({stage.seconds:.1f} s): {detail}")

    def _fail(self, name: str, detail: str) -> None:
        stage = self.stages[name]
        stage.state, stage.ended, stage.detail = "failed", time.monotonic(), detail
        if not self.console.is_terminal:
            self.console.print(f"  ✗ {stage.title}: {detail}")

    def _say(self, message: str) -> None:
        stamp = f"{time.monotonic() - self.t0:6.1f}s"
        self.log.append(f"{stamp}  {message}")
        if not self.console.is_terminal:
            self.console.print(f"    {stamp}  {message}", highlight=False)

    @contextlib.contextmanager
    def _display(self) -> Any:
        if not self.console.is_terminal:
            yield lambda: None
            return
        with Live(self._render(), console=self.console, refresh_per_second=4, transient=False) as live:
            stop = False

            async def ticker() -> None:
                while not stop:
                    live.update(self._render())
                    await asyncio.sleep(0.25)

            task = asyncio.get_running_loop().create_task(ticker())
            try:
                yield lambda: live.update(self._render())
            finally:
                stop = True
                task.cancel()
                live.update(self._render())

    def _render(self) -> Group:
        stages = Table.grid(padding=(0, 2))
        icons = {
            "waiting": "[dim]·[/]",
            "running": "[yellow]▶[/]",
            "done": "[green]✓[/]",
            "failed": "[red]✗[/]",
        }
        for s in self.stages.values():
            secs = f"{s.seconds:6.1f} s" if s.seconds is not None else ""
            stages.add_row(icons[s.state], s.title, secs, Text(s.detail, overflow="ellipsis", no_wrap=True))
        cars = Table(box=None, padding=(0, 2), header_style="bold")
        for col in (
            "car",
            "pilot",
            "lap",
            "progress",
            "speed",
            "recorded",
            "expert lap",
            "autopilot laps",
            "off track",
        ):
            cars.add_column(col)
        if self.stack is not None:
            for car, daemon in self.stack.cars.items():
                p = self.cars.get(car)
                if p is None:
                    continue
                state = daemon.body.state() if daemon.body is not None else None
                expert = p.expert_laps()
                auto = p.autopilot_laps()
                cars.add_row(
                    car,
                    p.pilot,
                    str(state.lap if state else "—"),
                    f"{state.progress:5.1f} %" if state and state.progress is not None else "—",
                    f"{state.speed:.2f} m/s" if state and state.speed is not None else "—",
                    str(p.recorded) if p.recorded else ("● rec" if daemon.recorder.recording else "—"),
                    f"{expert[-1].time_s:.2f} s" if expert else "—",
                    " ".join(f"{lap.time_s:.2f}" for lap in auto) or "—",
                    str(p.off_track_autopilot),
                )
        train = Text("")
        if self.training:
            t = self.training
            epoch = f"epoch {t.get('epoch')}/{t.get('epochs')}" if t.get("epochs") else ""
            loss = f"loss {t['loss']:.4f}" if isinstance(t.get("loss"), float) else ""
            train = Text(f"training: {t.get('state')} {t.get('stage') or ''} {epoch} {loss}".rstrip())
        log = Text("\n".join(self.log[-6:]), style="dim")
        return Group(stages, Text(""), cars, train, log)


def summary_table(report: dict[str, Any]) -> Table:
    """The printed summary of a finished demo."""
    table = Table(title="paddock demo", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for name, secs in report["stages_s"].items():
        table.add_row(f"stage: {name}", f"{secs:.1f} s")
    table.add_row("total", f"{report['total_s']:.1f} s")
    ttfl = report["time_to_first_autonomous_lap_s"]
    table.add_row("first autonomous lap", f"{ttfl:.1f} s after start" if ttfl else "—")
    laps = report["laps"]
    table.add_row("expert lap (mean)", f"{laps['expert_mean_s']:.2f} s" if laps["expert_mean_s"] else "—")
    table.add_row(
        "autopilot lap (mean / best)",
        f"{laps['autopilot_mean_s']:.2f} s / {laps['autopilot_best_s']:.2f} s"
        if laps["autopilot_mean_s"]
        else "—",
    )
    table.add_row("autonomous laps", str(laps["autopilot_completed"]))
    table.add_row("off track (autopilot)", str(laps["off_track_autopilot"]))
    frames = report["frames"]
    table.add_row(
        "frames", f"{frames['recorded']} recorded, {frames['persisted']} persisted, {frames['lost']} lost"
    )
    metrics = report["training"]["metrics"]
    if "completion_pct" in metrics:
        table.add_row("simulator evaluation", f"{metrics['completion_pct']:.0f}% completion")
    return table


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
