"""The evaluation gate: a candidate model is deployed only if its closed-loop evaluation in the
simulator is at least as good as the current model's on that target.

Figures come from the catalog: the newest evaluation (an ``evaluate`` job's result) that reports
``completion_pct``, else the model's lineage metrics (a ``train`` job with ``evaluate_laps`` puts its
closed-loop figures there). The rules, in order: the candidate has figures; its completion is at
least the current model's (or ``gate_min_completion_pct`` when the target has none); it leaves the
track no more often; its best lap is at most ``1 + gate_lap_time_tolerance`` times the current one;
with ``gate_smoke_test``, its newest car-side smoke test (``paddock hub smoke-test`` runs the car's own
check and records it) passed.
``force`` deploys a refused candidate anyway; every decision, forced or not, is kept in the object
store under ``models/{name}/{version}/gate/``.
"""

import json
import time
from typing import Any

from pydantic import BaseModel

from hub.config import MlopsConfig
from hub.storage.catalog import Catalog
from infra.store import ObjectStore


class Figures(BaseModel):
    """A model's closed-loop figures, and where they come from."""

    model: str
    completion_pct: float
    best_lap_time_s: float | None = None
    off_track_count: int | None = None
    source: str


class SmokeTest(BaseModel):
    """The newest car-side smoke test recorded for a model."""

    passed: bool
    reason: str | None = None
    latency_ms: float | None = None
    runtime: str | None = None


class GateDecision(BaseModel):
    model: str
    target: str
    passed: bool
    forced: bool = False
    reasons: list[str]
    candidate: Figures | None
    current: Figures | None
    smoke_test: SmokeTest | None = None
    ts: float


def smoke_test_of(catalog: Catalog, name: str, version: str) -> SmokeTest | None:
    for ev in reversed(catalog.evaluations(name, version)):
        m, details = ev["metrics"], ev.get("artifacts") or {}
        if "smoke_test_passed" in m:
            return SmokeTest(
                passed=bool(m["smoke_test_passed"]),
                reason=details.get("smoke_reason"),
                latency_ms=m.get("smoke_latency_ms"),
                runtime=details.get("runtime"),
            )
    return None


def judge_smoke_test(smoke: SmokeTest | None) -> list[str]:
    if smoke is None:
        return ["the candidate has no car-side smoke test (paddock hub smoke-test)"]
    return [] if smoke.passed else [f"the car's smoke test failed: {smoke.reason or 'no reason given'}"]


def figures_of(catalog: Catalog, name: str, version: str) -> Figures | None:
    ref = f"{name}:{version}"
    for ev in reversed(catalog.evaluations(name, version)):
        m = ev["metrics"]
        if "completion_pct" in m:
            return _figures(ref, m, f"evaluation {ev['job']}")
    model = catalog.get_model(name, version)
    metrics = ((model or {}).get("lineage") or {}).get("metrics") or {}
    return _figures(ref, metrics, "training lineage") if "completion_pct" in metrics else None


def _figures(ref: str, m: dict[str, Any], source: str) -> Figures:
    off = m.get("off_track_count")
    return Figures(
        model=ref,
        completion_pct=float(m["completion_pct"]),
        best_lap_time_s=m.get("best_lap_time_s"),
        off_track_count=int(off) if off is not None else None,
        source=source,
    )


def judge(candidate: Figures | None, current: Figures | None, cfg: MlopsConfig) -> list[str]:
    """Why the candidate fails (empty: it passes)."""
    if candidate is None:
        return ["the candidate has no closed-loop evaluation"]
    if current is None:
        if candidate.completion_pct < cfg.gate_min_completion_pct:
            return [
                f"completion {candidate.completion_pct:.1f}% < {cfg.gate_min_completion_pct:.1f}% required"
            ]
        return []
    reasons = []
    if candidate.completion_pct < current.completion_pct:
        reasons.append(f"completion {candidate.completion_pct:.1f}% < current {current.completion_pct:.1f}%")
    if (candidate.off_track_count or 0) > (current.off_track_count or 0):
        reasons.append(f"off track {candidate.off_track_count}× > current {current.off_track_count or 0}×")
    cand_lap, cur_lap = candidate.best_lap_time_s, current.best_lap_time_s
    if cur_lap is not None and (cand_lap is None or cand_lap > cur_lap * (1 + cfg.gate_lap_time_tolerance)):
        lap = "no completed lap" if cand_lap is None else f"best lap {cand_lap:.2f} s"
        reasons.append(f"{lap}, current {cur_lap:.2f} s")
    return reasons


def check(
    catalog: Catalog,
    store: ObjectStore,
    cfg: MlopsConfig,
    target: str,
    current: tuple[str, str] | None,
    candidate: tuple[str, str],
    force: bool = False,
) -> GateDecision:
    """Judge ``candidate`` against the target's ``current`` model; record the decision."""
    cand = figures_of(catalog, *candidate)
    cur = figures_of(catalog, *current) if current is not None and current != candidate else None
    reasons = judge(cand, cur, cfg)
    smoke = smoke_test_of(catalog, *candidate)
    if cfg.gate_smoke_test:
        reasons += judge_smoke_test(smoke)
    decision = GateDecision(
        model=f"{candidate[0]}:{candidate[1]}",
        target=target,
        passed=not reasons,
        forced=bool(reasons) and force,
        reasons=reasons,
        candidate=cand,
        current=cur,
        smoke_test=smoke,
        ts=time.time(),
    )
    key = f"models/{candidate[0]}/{candidate[1]}/gate/{decision.ts:.6f}-{target.replace('/', '-')}.json"
    store.put(key, json.dumps(decision.model_dump(mode="json"), indent=2).encode())
    return decision


def check_target(
    catalog: Catalog,
    store: ObjectStore,
    cfg: MlopsConfig,
    status: dict[str, Any],
    candidate: tuple[str, str],
    force: bool = False,
) -> GateDecision:
    """:func:`check` against the current model of a deployer's ``status`` of the target (its kind,
    name and slot): what ``POST /deployments`` and an automatic release ask."""
    current = status["current"]
    return check(
        catalog,
        store,
        cfg,
        f"{status['target_kind']}/{status['target']}",
        (current["name"], current["version"]) if current else None,
        candidate,
        force=force,
    )
