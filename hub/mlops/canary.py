"""The canary: a new model drives on one car of a group (or a fraction of it) first; after
``canary_window_s`` the hub compares that car's live driving with the group's cars on the current
model and with the candidate's own evaluation, then promotes the model to the group or rolls the
canary back, on its own.

The group's cars are the cars that run the group's current model and have no deployment of their
own (the hub learns groups from deployments, not from the cars). The canary gets a deployment of
its own (a car's topic wins over its group's); promotion deploys the model to the group and clears
the canary's own deployment, a rollback only clears it, so the car goes back to the group's model.

A canary is rolled back before its window ends when the car refuses the model (its smoke test or
signature check: a ``model_rejected`` event) or when its off-track moments and interventions reach
``canary_max_incidents``. Every canary is kept as JSON in the object store under ``canaries/``, so
one that runs when the hub stops goes on when it starts again (the hub's MLOps thread calls
:meth:`CanaryController.tick` each second); every change raises a ``canary``
event for each canary car.
"""

import logging
import math
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from hub.config import MlopsConfig
from hub.mlops import gate
from hub.mlops.monitor import FleetMonitor, Window
from hub.mlops.records import StoredRecords
from hub.storage.catalog import Catalog, Conflict
from infra.store import ObjectStore
from schemas.messages import CanaryEvent, Event, ModelRejectedEvent

log = logging.getLogger(__name__)

PREFIX = "canaries/"
Decision = Literal["promoted", "rolled_back"]
State = Literal["running", Decision]


class Deployments(Protocol):
    """What the canary needs of the hub's deployer (``hub.fleet.deployments.Deployer``)."""

    def check_target(self, kind: str, target: str) -> None: ...
    def status(self, kind: str, target: str) -> dict[str, Any]: ...
    def all_status(self) -> list[dict[str, Any]]: ...
    def deploy(
        self, kind: str, target: str, name: str, version: str, requested_by: str | None = None
    ) -> dict[str, Any]: ...
    def clear(self, kind: str, target: str, requested_by: str | None = None) -> dict[str, Any]: ...


class CarFigures(BaseModel):
    """One car's driving on one model during the canary."""

    car: str
    model: str
    minutes: float
    off_track: int
    interventions: int
    off_track_per_min: float | None
    interventions_per_min: float | None
    laps: int
    median_lap_s: float | None

    @classmethod
    def of(cls, w: Window) -> "CarFigures":
        return cls(
            car=w.car,
            model=w.model,
            minutes=round(w.minutes, 3),
            off_track=w.off_track,
            interventions=w.interventions,
            off_track_per_min=_round(w.per_min(w.off_track)),
            interventions_per_min=_round(w.per_min(w.interventions)),
            laps=len(w.laps),
            median_lap_s=_round(statistics.median(w.laps)) if w.laps else None,
        )


def _round(x: float | None) -> float | None:
    return round(x, 3) if x is not None else None


class Canary(BaseModel):
    id: str
    group: str
    model: str = Field(description="the candidate, name:version")
    baseline: str = Field(description="the group's model when the canary started")
    cars: list[str] = Field(description="the cars trying the candidate")
    others: list[str] = Field(description="the group's cars staying on the baseline")
    state: State = "running"
    started: float
    window_s: float
    decided: float | None = None
    requested_by: str | None = None
    decided_by: str | None = Field(default=None, description="'hub' for its own decisions, else who asked")
    reasons: list[str] = Field(default_factory=list, description="why it was rolled back (or promoted)")
    refused: dict[str, str] = Field(default_factory=dict, description="cars that refused the model, why")
    canary_figures: list[CarFigures] = Field(default_factory=list)
    baseline_figures: list[CarFigures] = Field(default_factory=list)
    evaluation: gate.Figures | None = None
    forced: bool = Field(default=False, description="started although the evaluation gate refused it")

    @property
    def due(self) -> float:
        return self.started + self.window_s


class CanaryError(Exception):
    """A canary that cannot start: ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or {}


def judge(cfg: MlopsConfig, canary: Canary) -> list[str]:
    """Why the canary fails (empty: promote). Compares the figures already in ``canary``."""
    reasons = [f"{car} refused {canary.model}: {why}" for car, why in canary.refused.items()]
    ran = {f.car: f for f in canary.canary_figures if f.model == canary.model}
    reasons += [f"{car} never drove {canary.model}" for car in canary.cars if car not in ran]
    base = canary.baseline_figures
    for f in ran.values():
        reasons += _rates(cfg, f, base) + _laps(cfg, f, base, canary.evaluation)
    return reasons


def _over_incidents(cfg: MlopsConfig, f: CarFigures) -> bool:
    """Off-track moments and interventions enough to roll the canary back at once."""
    return f.off_track + f.interventions >= cfg.canary_max_incidents


def _rates(cfg: MlopsConfig, f: CarFigures, base: list[CarFigures]) -> list[str]:
    out = []
    if _over_incidents(cfg, f):
        incidents, limit = f.off_track + f.interventions, cfg.canary_max_incidents
        out.append(f"{f.car}: {incidents} off-track moments and interventions (limit {limit})")
    for what in ("off_track_per_min", "interventions_per_min"):
        rate = getattr(f, what) or 0.0
        others = [getattr(b, what) or 0.0 for b in base]
        usual = statistics.mean(others) if others else 0.0
        if rate > usual + cfg.canary_rate_margin_per_min:
            label = what.replace("_per_min", "").replace("_", "-")
            margin = cfg.canary_rate_margin_per_min
            out.append(f"{f.car}: {label} {rate:.2f}/min > group {usual:.2f}/min + {margin}")
    return out


def _laps(cfg: MlopsConfig, f: CarFigures, base: list[CarFigures], ev: gate.Figures | None) -> list[str]:
    if f.laps < cfg.canary_min_laps:
        return [f"{f.car}: {f.laps} flying laps in the window, {cfg.canary_min_laps} needed"]
    if f.median_lap_s is None:
        return []
    out = []
    group_laps = [b.median_lap_s for b in base if b.median_lap_s is not None]
    if group_laps:
        usual = statistics.median(group_laps)
        tolerance = cfg.canary_lap_time_tolerance
        if f.median_lap_s > usual * (1 + tolerance):
            out.append(f"{f.car}: median lap {f.median_lap_s:.2f} s > group {usual:.2f} s + {tolerance:.0%}")
    best = ev.best_lap_time_s if ev is not None else None
    tolerance = cfg.canary_evaluation_tolerance
    if best is not None and f.median_lap_s > best * (1 + tolerance):
        out.append(f"{f.car}: median lap {f.median_lap_s:.2f} s > evaluation {best:.2f} s + {tolerance:.0%}")
    return out


class CanaryController:
    """Starts canaries, watches them (:meth:`tick`, from its own thread) and decides."""

    def __init__(
        self,
        config: MlopsConfig,
        catalog: Catalog,
        store: ObjectStore,
        deployer: Deployments,
        monitor: FleetMonitor,
        on_event: Callable[[str, CanaryEvent], None],
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.store = store
        self.deployer = deployer
        self.monitor = monitor
        self.on_event = on_event
        self._lock = threading.RLock()
        self._stored = StoredRecords(store, PREFIX, Canary, key=lambda c: c.id)
        self._canaries = self._stored.records

    # --- reading ----------------------------------------------------------------------------------
    def all(self) -> list[Canary]:
        with self._lock:
            return sorted(self._canaries.values(), key=lambda c: c.started)

    def get(self, canary_id: str) -> Canary | None:
        with self._lock:
            return self._canaries.get(canary_id)

    def running(self) -> list[Canary]:
        return [c for c in self.all() if c.state == "running"]

    # --- starting ---------------------------------------------------------------------------------
    def start(
        self,
        group: str,
        name: str,
        version: str,
        cars: list[str] | None = None,
        requested_by: str | None = None,
        force: bool = False,
    ) -> Canary:
        """Deploy ``name:version`` to the canary cars of ``group``; raises :class:`CanaryError`."""
        self.deployer.check_target("group", group)
        if self.catalog.get_model(name, version) is None:
            raise CanaryError(404, f"model {name}:{version} not found")
        with self._lock:
            if any(c.group == group for c in self.running()):
                raise CanaryError(409, f"group {group} already has a canary running")
            current = self.deployer.status("group", group)["current"]
            if current is None:
                raise CanaryError(409, f"group {group} has no model yet: deploy one to it first")
            baseline = f"{current['name']}:{current['version']}"
            baseline_ref = (current["name"], current["version"])
            evaluation, forced = self._gate(group, baseline_ref, (name, version), force)
            members = self.members(baseline)
            chosen = self._choose(members, cars)
            canary = Canary(
                id=f"canary-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
                group=group,
                model=f"{name}:{version}",
                baseline=baseline,
                cars=chosen,
                others=[c for c in members if c not in chosen],
                started=time.time(),
                window_s=self.config.canary_window_s,
                requested_by=requested_by,
                evaluation=evaluation,
                forced=forced,
            )
            for car in chosen:
                self.deployer.deploy("car", car, name, version, requested_by=f"{canary.id}: canary")
            self._save(canary)
        log.warning(
            "%s: %s on %s first, %s stay on %s", canary.id, canary.model, chosen, canary.others, baseline
        )
        self._announce(canary, "started")
        return canary

    def _gate(
        self, group: str, current: tuple[str, str], candidate: tuple[str, str], force: bool
    ) -> tuple[gate.Figures | None, bool]:
        """The evaluation gate before the canary (when on): the candidate's evaluation, and whether
        ``force`` took it past a refusal."""
        forced = False
        if self.config.gate:
            decision = gate.check(
                self.catalog, self.store, self.config, f"group/{group}", current, candidate, force=force
            )
            if not decision.passed and not decision.forced:
                detail = {"gate": decision.model_dump(mode="json")}
                raise CanaryError(409, "refused by the evaluation gate", detail)
            forced = decision.forced
        return gate.figures_of(self.catalog, *candidate), forced

    def members(self, baseline: str) -> list[str]:
        """The group's cars: online, driving ``baseline``, without a deployment of their own."""
        rows = {r.car: r for r in self.monitor.rows()}
        out = []
        for car in self.catalog.list_cars():
            name = car["car"]
            reported = rows[name].model if name in rows else None
            active = (car.get("model_state") or {}).get("active") or reported
            if car["state"] == "online" and active == baseline and not self._own_deployment(name):
                out.append(name)
        return out

    def _own_deployment(self, car: str) -> bool:
        return self.deployer.status("car", car)["current"] is not None

    def _choose(self, members: list[str], cars: list[str] | None) -> list[str]:
        if cars:
            strangers = [c for c in cars if c not in members]
            if strangers:
                raise CanaryError(
                    409, f"{', '.join(strangers)}: not online on the group's model without a model of its own"
                )
            return list(dict.fromkeys(cars))
        if not members:
            raise CanaryError(409, "no car of the group is online on its current model")
        cfg = self.config
        count = math.ceil(cfg.canary_fraction * len(members)) if cfg.canary_fraction else cfg.canary_cars
        return members[: max(1, min(count, len(members)))]

    # --- watching ---------------------------------------------------------------------------------
    def on_car_event(self, car: str, event: Event) -> None:
        """A car refusing the canary's model (smoke test, signature): noted, rolled back on the next tick."""
        if not isinstance(event, ModelRejectedEvent) or event.name is None:
            return
        ref = f"{event.name}:{event.version}"
        with self._lock:
            for c in self.running():
                if car in c.cars and c.model == ref:
                    c.refused[car] = event.reason
                    self._save(c)

    def tick(self, now: float | None = None) -> list[Canary]:
        """Decide every canary that is due, refused, or over its incidents; returns those decided."""
        now = time.time() if now is None else now
        decided = []
        for c in self.running():
            with self._lock:
                if c.state != "running":
                    continue
                self._measure(c)
                reasons = judge(self.config, c)
                early = bool(c.refused) or any(
                    f.model == c.model and _over_incidents(self.config, f) for f in c.canary_figures
                )
                if now < c.due and not early:
                    continue
                self._decide(c, "rolled_back" if reasons else "promoted", reasons, "hub")
            decided.append(c)
        return decided

    def _measure(self, c: Canary) -> None:
        windows = {car: self.monitor.window(car) for car in c.cars + c.others}
        c.canary_figures = [CarFigures.of(w) for car in c.cars if (w := windows[car]) is not None]
        c.baseline_figures = [
            CarFigures.of(w) for car in c.others if (w := windows[car]) is not None and w.model == c.baseline
        ]

    # --- deciding ---------------------------------------------------------------------------------
    def promote(self, canary_id: str, requested_by: str = "operator") -> Canary:
        return self._manual(canary_id, "promoted", requested_by)

    def rollback(self, canary_id: str, requested_by: str = "operator") -> Canary:
        return self._manual(canary_id, "rolled_back", requested_by)

    def _manual(self, canary_id: str, state: Decision, requested_by: str) -> Canary:
        with self._lock:
            c = self._canaries.get(canary_id)
            if c is None:
                raise KeyError(canary_id)
            if c.state != "running":
                raise Conflict(f"{canary_id} was already {c.state.replace('_', ' ')}")
            self._measure(c)
            self._decide(c, state, [f"{state.replace('_', ' ')} by {requested_by}"], requested_by)
            return c

    def _decide(self, c: Canary, state: Decision, reasons: list[str], by: str) -> None:
        name, _, version = c.model.partition(":")
        why = f"{c.id}: {state.replace('_', ' ')}"
        if state == "promoted":
            self.deployer.deploy("group", c.group, name, version, requested_by=why)
        for car in c.cars:
            if self.deployer.status("car", car)["current"] is not None:
                self.deployer.clear("car", car, requested_by=why)
        c.state, c.reasons, c.decided, c.decided_by = state, reasons, time.time(), by
        self._save(c)
        log.warning("%s %s%s", why, c.model, f": {'; '.join(reasons)}" if reasons else "")
        self._announce(c, state)

    def _announce(self, c: Canary, state: Literal["started", "promoted", "rolled_back"]) -> None:
        for car in c.cars:
            event = CanaryEvent(
                ts=time.time(),
                canary=c.id,
                model=c.model,
                group=c.group,
                baseline=c.baseline,
                state=state,
                reasons=c.reasons,
            )
            self.on_event(car, event)

    def _save(self, c: Canary) -> None:
        self._stored.save(c)


class CanaryCollector(Collector):
    """``paddock_canary_running`` per group and model, ``paddock_canary_decisions_total`` per outcome."""

    def __init__(self, canaries: Callable[[], list[Canary]]) -> None:
        self.canaries = canaries

    def collect(self) -> Iterator[Metric]:
        canaries = self.canaries()
        running = GaugeMetricFamily(
            "paddock_canary_running", "1 while a canary tries the model.", labels=["group", "model"]
        )
        remaining = GaugeMetricFamily(
            "paddock_canary_remaining_seconds", "Time left in the canary's window.", labels=["group", "model"]
        )
        now = time.time()
        for c in canaries:
            if c.state == "running":
                running.add_metric([c.group, c.model], 1.0)
                remaining.add_metric([c.group, c.model], max(0.0, c.due - now))
        decisions = CounterMetricFamily(
            "paddock_canary_decisions", "Canaries decided, by outcome.", labels=["group", "decision"]
        )
        counts: dict[tuple[str, str], int] = {}
        for c in canaries:
            if c.state != "running":
                counts[(c.group, c.state)] = counts.get((c.group, c.state), 0) + 1
        for (group, decision), n in sorted(counts.items()):
            decisions.add_metric([group, decision], float(n))
        yield from (running, remaining, decisions)
