"""The MLOps pipeline as steps over the hub's REST API: collect → validate → train → evaluate →
gate → deploy. ``paddock hub pipeline`` runs them in a terminal; ``deploy/airflow/`` wraps each one
as an Airflow task. Nothing here imports Airflow.

The hub holds the pipeline's state: a run's id names its dataset and its jobs, so a step run again
(an orchestrator's retry, a crash of the machine running it) picks up what the earlier try started
instead of queueing it twice, and each step finds its input (the dataset, the trained model) on the
hub without being handed the previous step's output.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deploy.commands.hubctl import HubClient
from deploy.errors import UserError, WorkFailed
from schemas.ids import CAR_ID_PATTERN, GROUP_ID_PATTERN, NAME_PATTERN

STEPS = ("collect", "validate", "train", "evaluate", "gate", "deploy")
REQUESTED_BY = "paddock pipeline"
Report = Callable[[str], None]


class StepFailed(WorkFailed):
    """A step ran and its work failed (a job failed, the data is not enough, the gate refused)."""


class GateRefused(StepFailed):
    """The evaluation gate refused the candidate; ``decision`` holds its reasons and figures."""

    def __init__(self, message: str, decision: dict[str, Any]) -> None:
        super().__init__(message)
        self.decision = decision


class PipelineConfig(BaseModel):
    """One pipeline run: what to learn from, how to check it, where it goes."""

    model_config = ConfigDict(extra="forbid")
    run: str = Field(min_length=1, max_length=250, description="the run's id: names its dataset and jobs")
    dataset: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="train on this dataset instead of collecting one"
    )
    cars: list[str] = Field(default_factory=list, description="collect only these cars' sessions")
    max_sessions: int = Field(default=50, ge=1, le=1000, description="the newest sealed sessions taken")
    feedback: bool = Field(default=True, description="add the hub's feedback sessions to the training set")
    val_fraction: float = Field(default=0.2, ge=0, le=0.9)
    seed: int = 0
    min_frames: int = Field(default=100, ge=1, description="fewer frames than this fail validation")
    model_name: str = Field(default="pilot", pattern=NAME_PATTERN)
    architecture: str = "mobilenet"
    epochs: int = Field(default=10, ge=1, le=10_000)
    train_options: dict[str, Any] = Field(default_factory=dict, description="the train job's options")
    track: str = Field(default="oval", description="the closed-loop evaluation's track")
    laps: int = Field(default=2, ge=1, le=1000)
    evaluate_options: dict[str, Any] = Field(default_factory=dict)
    smoke_test: bool = Field(default=True, description="run the car's smoke test here before the gate")
    latency_ms: float = Field(default=40.0, gt=0, description="the smoke test's latency budget")
    car: str | None = Field(default=None, pattern=CAR_ID_PATTERN, description="deploy to this car")
    group: str | None = Field(default=None, pattern=GROUP_ID_PATTERN, description="… or this group")
    canary: bool = Field(default=False, description="to the group through a canary (one car first)")
    force: bool = Field(default=False, description="deploy even if the gate refuses (recorded)")
    job_timeout_s: float = Field(default=6 * 3600, gt=0)
    poll_s: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _target(self) -> PipelineConfig:
        if self.car is not None and self.group is not None:
            raise ValueError("give at most one of car and group")
        if self.canary and self.group is None:
            raise ValueError("a canary needs a group")
        bad = [c for c in self.cars if not re.fullmatch(CAR_ID_PATTERN.strip("^$"), c)]
        if bad:
            raise ValueError(f"invalid car ids: {', '.join(bad)}")
        return self

    @property
    def key(self) -> str:
        """The run's id as a name the hub accepts (an Airflow run id has ':' and '+')."""
        clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.run).strip("-.") or "run"
        if clean == self.run and len(clean) <= 40:
            return clean
        return f"{clean[:31]}-{hashlib.sha256(self.run.encode()).hexdigest()[:8]}"

    @property
    def dataset_name(self) -> str:
        return self.dataset or f"pipeline-{self.key}"

    def job_id(self, kind: str, attempt: int = 1) -> str:
        return f"{self.key}-{kind}" + (f"-{attempt}" if attempt > 1 else "")

    def target(self) -> tuple[str, str] | None:
        if self.car:
            return "car", self.car
        return ("group", self.group) if self.group else None


def _quiet(_: str) -> None:
    pass


class Pipeline:
    """The steps against one hub. Each returns a JSON-able summary of what it did."""

    def __init__(self, client: HubClient, cfg: PipelineConfig, report: Report = _quiet) -> None:
        self.client, self.cfg, self.report = client, cfg, report

    def run(self, name: str) -> dict[str, Any]:
        if name not in STEPS:
            raise UserError(f"unknown step {name!r}; the steps are {', '.join(STEPS)}")
        step: Callable[[], dict[str, Any]] = getattr(self, name)
        return step()

    def _get(self, path: str) -> Any | None:
        """GET ``path``; None for a 404 (something this run has not made yet)."""
        r = self.client.request("GET", path)
        return None if r.status_code == 404 else self.client.answer(r)

    # --- collect and validate -----------------------------------------------------------------
    def collect(self) -> dict[str, Any]:
        """Gather feedback now, then make the run's dataset from the newest sealed sessions (and
        the feedback sessions, for training)."""
        from hub.fleet.registry import split_sessions
        from schemas.messages import SessionRef

        name = self.cfg.dataset_name
        existing = self._get(f"/datasets/{name}")
        if existing is not None:
            self.report(f"collect: dataset {name} exists ({len(existing['train'])}+{len(existing['val'])})")
            return {
                "dataset": name,
                "train": len(existing["train"]),
                "val": len(existing["val"]),
                "new": False,
            }
        feedback = self._feedback_sessions()
        recorded = [r for r in self._sealed_sessions() if (r.car, r.session) not in feedback]
        if not recorded and not feedback:
            raise StepFailed("no sealed sessions to train on" + self._cars_note())
        train, val = split_sessions(recorded, self.cfg.val_fraction, self.cfg.seed)
        train += [SessionRef(car=c, session=s) for c, s in sorted(feedback)]
        body = {
            "name": name,
            "train": [r.to_dict() for r in train],
            "val": [r.to_dict() for r in val],
            "description": f"collected by {REQUESTED_BY} run {self.cfg.run}",
        }
        made = self.client.call("POST", "/datasets", json=body)
        self.report(f"collect: dataset {name}: {len(made['train'])} train, {len(made['val'])} val sessions")
        return {
            "dataset": name,
            "train": len(made["train"]),
            "val": len(made["val"]),
            "feedback_sessions": len(feedback),
            "new": True,
        }

    def _cars_note(self) -> str:
        return f" from {', '.join(self.cfg.cars)}" if self.cfg.cars else ""

    def _feedback_sessions(self) -> set[tuple[str, str]]:
        if not self.cfg.feedback:
            return set()
        if self.client.request("POST", "/feedback/collect").status_code == 503:
            return set()  # this hub collects no feedback
        found = self.client.call("GET", "/feedback")
        refs = {(r["car"], r["session"]) for r in found.get("train", []) + found.get("val", [])}
        return {ref for ref in refs if not self.cfg.cars or ref[0] in self.cfg.cars}

    def _sealed_sessions(self) -> list[Any]:
        from schemas.messages import SessionRef

        rows: list[dict[str, Any]] = []
        cars: list[str | None] = [*self.cfg.cars] or [None]
        for car in cars:
            params: dict[str, Any] = {"limit": 1000} | ({"car": car} if car else {})
            rows += self.client.call("GET", "/sessions", params=params)["sessions"]
        sealed = [r for r in rows if r["state"] == "sealed" and r["frame_count"] > 0]
        sealed.sort(key=lambda r: r["created"], reverse=True)
        return [SessionRef(car=r["car"], session=r["session"]) for r in sealed[: self.cfg.max_sessions]]

    def validate(self) -> dict[str, Any]:
        """The dataset is fit to train on: sealed sessions with frames, in both splits."""
        name = self.cfg.dataset_name
        ds = self._get(f"/datasets/{name}")
        if ds is None:
            raise StepFailed(f"dataset {name} does not exist (run the collect step first)")
        frames = {"train": 0, "val": 0}
        problems: list[str] = []
        for split in frames:
            for ref in ds[split]:
                s = self._get(f"/sessions/{ref['car']}/{ref['session']}")
                if s is None or s["state"] != "sealed":
                    problems.append(
                        f"{ref['car']}/{ref['session']} is {'gone' if s is None else 'not sealed'}"
                    )
                    continue
                frames[split] += s["frame_count"]
        if not ds["train"]:
            problems.append("no training sessions")
        if self.cfg.val_fraction > 0 and not ds["val"]:
            problems.append("no validation sessions (record at least two sessions)")
        if frames["train"] + frames["val"] < self.cfg.min_frames:
            problems.append(f"{frames['train'] + frames['val']} frames < {self.cfg.min_frames} needed")
        if problems:
            raise StepFailed(f"dataset {name} is not fit to train on: {'; '.join(problems)}")
        self.report(f"validate: {name}: {frames['train']} train frames, {frames['val']} val frames")
        return {"dataset": name, "train_frames": frames["train"], "val_frames": frames["val"]}

    # --- train and evaluate -------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        params = {
            "dataset": self.cfg.dataset_name,
            "architecture": self.cfg.architecture,
            "epochs": self.cfg.epochs,
            "seed": self.cfg.seed,
            "model_name": self.cfg.model_name,
            "options": self.cfg.train_options,
        }
        job = self._job("train", params)
        model = (job.get("result") or {}).get("model")
        if not model:
            raise StepFailed(f"train job {job['job']} registered no model")
        ref = f"{model['name']}:{model['version']}"
        self.report(f"train: {job['job']} made {ref}")
        return {"job": job["job"], "model": ref, "metrics": (job.get("result") or {}).get("metrics", {})}

    def candidate(self) -> tuple[str, str]:
        """The model this run's (newest successful) train job made."""
        for job in reversed(self._attempts("train")):
            model = (job.get("result") or {}).get("model")
            if job["state"] == "succeeded" and model:
                return model["name"], model["version"]
        raise StepFailed(f"run {self.cfg.run} has no trained model (run the train step first)")

    def _attempts(self, kind: str) -> list[dict[str, Any]]:
        """This run's ``kind`` jobs, first try first: ``{key}-{kind}``, then ``-2``, ``-3``…"""
        found: list[dict[str, Any]] = []
        while (job := self._get(f"/jobs/{self.cfg.job_id(kind, len(found) + 1)}?history=0")) is not None:
            found.append(job)
        return found

    def evaluate(self) -> dict[str, Any]:
        """A closed-loop evaluation in the simulator: the figures the gate compares."""
        name, version = self.candidate()
        params = {
            "model_name": name,
            "model_version": version,
            "track": self.cfg.track,
            "laps": self.cfg.laps,
            "seed": self.cfg.seed,
            "options": self.cfg.evaluate_options,
        }
        job = self._job("evaluate", params)
        found = [
            e
            for e in self.client.call("GET", f"/models/{name}/{version}")["evaluations"]
            if e["job"] == job["job"]
        ]
        metrics = found[-1]["metrics"] if found else (job.get("result") or {}).get("metrics", {})
        figures = {k: metrics.get(k) for k in ("completion_pct", "best_lap_time_s", "off_track_count")}
        self.report(f"evaluate: {name}:{version} on {self.cfg.track}: {_figures(figures)}")
        return {"job": job["job"], "model": f"{name}:{version}", "track": self.cfg.track, **figures}

    def _job(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """This run's ``kind`` job: requested unless an earlier try did, then followed to its end."""
        tries = self._attempts(kind)
        if tries and tries[-1]["state"] != "failed" and _asked(tries[-1], params):
            job_id = tries[-1]["job"]  # an earlier try's job: follow it rather than queue another
        else:
            job_id = self.cfg.job_id(kind, len(tries) + 1)
            body = {"kind": kind, "job": job_id, "params": params, "requested_by": REQUESTED_BY}
            self.client.call("POST", "/jobs", json=body)
            self.report(f"{kind}: requested job {job_id}")
        job = self._follow(job_id)
        if job["state"] != "succeeded":
            error = (job.get("result") or {}).get("error") or job["state"]
            raise StepFailed(f"{kind} job {job_id} failed: {error}")
        return job

    def _follow(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.cfg.job_timeout_s
        last = ""
        while True:
            job: dict[str, Any] = self.client.call("GET", f"/jobs/{job_id}?history=0")
            if job["state"] in ("succeeded", "failed"):
                return job
            line = _progress(job)
            if line != last:
                self.report(f"{job['kind']} {job_id}: {line}")
                last = line
            if time.monotonic() > deadline:
                raise StepFailed(f"job {job_id} is still {job['state']} after {self.cfg.job_timeout_s:g} s")
            time.sleep(self.cfg.poll_s)

    # --- gate and deploy ----------------------------------------------------------------------
    def _target(self) -> tuple[str, str]:
        target = self.cfg.target()
        if target is None:
            raise UserError("give the target: --car CAR or --group GROUP")
        return target

    def gate(self) -> dict[str, Any]:
        """The car's smoke test (recorded on the hub), then the hub's evaluation gate, asked
        without deploying: a refusal fails this step with the gate's reasons."""
        kind, target = self._target()
        name, version = self.candidate()
        smoke = self._smoke_test(name, version) if self.cfg.smoke_test else None
        body = {"model": {"name": name, "version": version}, kind: target, "force": self.cfg.force}
        decision = self.client.call("POST", "/deployments/gate", json=body)["gate"]
        out = {
            "model": f"{name}:{version}",
            "target": f"{kind}/{target}",
            "smoke_test": smoke,
            "gate": decision,
        }
        if decision is None:
            self.report("gate: this hub runs no evaluation gate ([mlops] gate = false)")
            return out
        if not decision["passed"] and not decision["forced"]:
            raise GateRefused(
                f"the gate refuses {name}:{version} for {kind} {target}: {'; '.join(decision['reasons'])}",
                decision,
            )
        verdict = "passes" if decision["passed"] else "is forced past"
        self.report(f"gate: {name}:{version} {verdict} the gate for {kind} {target}")
        return out

    def _smoke_test(self, name: str, version: str) -> dict[str, Any]:
        from deploy.smoke import smoke_test_on_hub

        result = smoke_test_on_hub(self.client, name, version, self.cfg.latency_ms, REQUESTED_BY, StepFailed)
        self.report(f"gate: the car's smoke test {'passed' if result['passed'] else 'failed'}")
        return result

    def deploy(self) -> dict[str, Any]:
        """Deploy the candidate (the hub's gate checks it again), or start its canary."""
        kind, target = self._target()
        name, version = self.candidate()
        model = {"name": name, "version": version}
        if self.cfg.canary:
            return self._canary(name, version)
        status = self._get(f"/deployments/{kind}/{target}")
        if status is not None and status["current"] == model:
            self.report(f"deploy: {kind} {target} already runs {name}:{version}")
            return {"model": f"{name}:{version}", "target": f"{kind}/{target}", "new": False}
        body = {"model": model, kind: target, "force": self.cfg.force, "requested_by": REQUESTED_BY}
        r = self.client.request("POST", "/deployments", json=body)
        detail = r.json().get("detail") if r.status_code >= 400 else None
        if r.status_code == 409 and isinstance(detail, dict) and isinstance(gate := detail.get("gate"), dict):
            raise GateRefused(f"the gate refuses {name}:{version}: {'; '.join(gate['reasons'])}", gate)
        if r.status_code >= 400:
            error = UserError if r.status_code < 500 else StepFailed
            raise error(f"deploying {name}:{version} to {kind} {target}: {r.status_code} {detail}")
        out = r.json()
        self.report(f"deploy: {name}:{version} to {kind} {target}")
        return {
            "model": f"{name}:{version}",
            "target": f"{kind}/{target}",
            "new": True,
            "published": out.get("published"),
            "gate": out.get("gate"),
        }

    def _canary(self, name: str, version: str) -> dict[str, Any]:
        ref = f"{name}:{version}"
        for c in self.client.call("GET", "/canaries"):
            if c["model"] == ref and c["group"] == self.cfg.group:
                self.report(f"deploy: canary {c['id']} of {ref} is {c['state']}")
                return {"canary": c["id"], "model": ref, "state": c["state"], "cars": c["cars"], "new": False}
        body = {
            "model": {"name": name, "version": version},
            "group": self.cfg.group,
            "force": self.cfg.force,
            "requested_by": REQUESTED_BY,
        }
        c = self.client.call("POST", "/canaries", json=body)
        self.report(f"deploy: canary {c['id']}: {ref} on {', '.join(c['cars'])} for {c['window_s']:g} s")
        return {"canary": c["id"], "model": ref, "state": c["state"], "cars": c["cars"], "new": True}


def _asked(job: dict[str, Any], params: dict[str, Any]) -> bool:
    """The job was requested with ``params`` (a retrained model needs its own evaluation)."""
    asked = ((job.get("request") or {}).get("params")) or {}
    return all(asked.get(k) == v for k, v in params.items())


def _progress(job: dict[str, Any]) -> str:
    p = job.get("progress") or {}
    parts = [job["state"], p.get("stage")]
    if p.get("epoch") is not None:
        parts.append(f"epoch {p['epoch']}/{p.get('epochs', '?')}")
    if p.get("loss") is not None:
        parts.append(f"loss {p['loss']:.4g}")
    return " ".join(str(x) for x in parts if x)


def _figures(f: dict[str, Any]) -> str:
    lap = f.get("best_lap_time_s")
    return (
        f"completion {f.get('completion_pct')}%, best lap {'–' if lap is None else f'{lap:.2f} s'}, "
        f"off track {f.get('off_track_count')}×"
    )
