"""Signed model deployments to cars and groups: assign, inspect, roll back, clear."""

from typing import Any

from fastapi import APIRouter, HTTPException

from hub.api.deps import ADMIN, AUTH, ERRORS, Parts, not_found
from hub.api.models import (
    CanaryIn,
    DeploymentIn,
    DeploymentOut,
    GateCheckOut,
    KindPath,
    Problem,
    SlotQuery,
    TargetPath,
)
from hub.api.routes.canaries import start_canary
from hub.mlops import gate

router = APIRouter(tags=["deployments"])


@router.get("/deployments", summary="The current model of every target")
def deployments(hub: Parts) -> list[DeploymentOut]:
    return [DeploymentOut(**d) for d in hub.deployer.all_status()]


@router.post(
    "/deployments",
    summary="Deploy a model to a car or group: a signed, retained envelope (a classifier: to the "
    "detector); to a group with `canary` (or `[mlops] canary_groups`), one car first",
    status_code=201,
    dependencies=ADMIN,
    responses={409: {"model": Problem}, 503: {"model": Problem}, **ERRORS},
)
def deploy(hub: Parts, body: DeploymentIn) -> DeploymentOut:
    kind, target = ("car", body.car) if body.car else ("group", body.group)
    assert target is not None
    if kind == "group" and _as_canary(hub, target, body):
        return _canary(hub, target, body)
    decision = _gate(hub, kind, target, body)
    out = hub.deployer.deploy(kind, target, body.model.name, body.model.version, body.requested_by)
    return DeploymentOut(**out, gate=decision)


def _as_canary(hub: Parts, group: str, body: DeploymentIn) -> bool:
    """A canary when asked, or where ``canary_groups`` names the group and it has a model already
    (the first model of a group has nothing to be compared with)."""
    if body.canary is not None:
        return body.canary
    if hub.mlops is None or hub.canaries is None or not hub.mlops.canaries_group(group):
        return False
    if hub.catalog.get_model(body.model.name, body.model.version) is None:
        return False  # the deployer answers 404
    slot = hub.deployer.slot_of(body.model.name, body.model.version)
    return slot == "pilot" and hub.deployer.status("group", group, slot)["current"] is not None


def _canary(hub: Parts, group: str, body: DeploymentIn) -> DeploymentOut:
    """Start a canary instead (as ``POST /canaries``): the group's status, with the canary."""
    start = CanaryIn(model=body.model, group=group, requested_by=body.requested_by, force=body.force)
    canary = start_canary(hub, start)
    return DeploymentOut(**hub.deployer.status("group", group), canary=canary)


@router.post(
    "/deployments/gate",
    summary="Ask the evaluation gate about a deployment without deploying (a pipeline's gate step)",
    dependencies=AUTH,
    responses=ERRORS,
)
def gate_check(hub: Parts, body: DeploymentIn) -> GateCheckOut:
    """The decision the gate would take now, recorded like any other; ``gate`` is None when the
    hub runs no gate (``[mlops] gate = false``), so every deployment would go through."""
    kind, target = ("car", body.car) if body.car else ("group", body.group)
    assert target is not None
    if hub.catalog.get_model(body.model.name, body.model.version) is None:
        raise not_found(f"model {body.model.name}:{body.model.version}")
    return GateCheckOut(gate=_decide(hub, kind, target, body))


def _gate(hub: Parts, kind: str, target: str, body: DeploymentIn) -> dict[str, Any] | None:
    """The evaluation gate (``[mlops] gate``): 409 with the figures when the candidate is worse."""
    decision = _decide(hub, kind, target, body)
    if decision is not None and not decision["passed"] and not decision["forced"]:
        raise HTTPException(409, {"message": "refused by the evaluation gate", "gate": decision})
    return decision


def _decide(hub: Parts, kind: str, target: str, body: DeploymentIn) -> dict[str, Any] | None:
    """The gate's decision on ``body`` for the target (None: the hub runs no gate)."""
    if hub.mlops is None or not hub.mlops.gate:
        return None
    hub.deployer.check_target(kind, target)
    if hub.catalog.get_model(body.model.name, body.model.version) is None:
        return None  # the deployer answers 404
    status = hub.deployer.status(kind, target, hub.deployer.slot_of(body.model.name, body.model.version))
    candidate = (body.model.name, body.model.version)
    decision = gate.check_target(hub.catalog, hub.store, hub.mlops, status, candidate, force=body.force)
    return decision.model_dump(mode="json")


@router.get("/deployments/{kind}/{target}", summary="A target's current model and history", responses=ERRORS)
def deployment(hub: Parts, kind: KindPath, target: TargetPath, slot: SlotQuery = "pilot") -> DeploymentOut:
    history = hub.catalog.deployment_history(kind, target, slot)
    if not history:
        raise not_found(f"{slot} deployment of {kind} {target}")
    return DeploymentOut(**hub.deployer.status(kind, target, slot), history=history)


@router.post(
    "/deployments/{kind}/{target}/rollback",
    summary="Go back to the model deployed before the current one",
    dependencies=ADMIN,
    responses=ERRORS,
)
def rollback(hub: Parts, kind: KindPath, target: TargetPath, slot: SlotQuery = "pilot") -> DeploymentOut:
    if not hub.catalog.deployment_history(kind, target, slot):
        raise not_found(f"{slot} deployment of {kind} {target}")
    return DeploymentOut(**hub.deployer.rollback(kind, target, slot=slot))


@router.delete(
    "/deployments/{kind}/{target}",
    summary="Clear a target's retained model message",
    dependencies=ADMIN,
    responses=ERRORS,
)
def clear(hub: Parts, kind: KindPath, target: TargetPath, slot: SlotQuery = "pilot") -> DeploymentOut:
    return DeploymentOut(**hub.deployer.clear(kind, target, slot=slot))
