"""Signed model deployments to cars and groups: assign, inspect, roll back, clear."""

from fastapi import APIRouter

from hub.api.deps import ADMIN, ERRORS, Parts, not_found
from hub.api.models import DeploymentIn, DeploymentOut, KindPath, Problem, TargetPath

router = APIRouter(tags=["deployments"])


@router.get("/deployments", summary="The current model of every target")
def deployments(hub: Parts) -> list[DeploymentOut]:
    return [DeploymentOut(**d) for d in hub.deployer.all_status()]


@router.post(
    "/deployments",
    summary="Deploy a model to a car or group: a signed, retained envelope",
    status_code=201,
    dependencies=ADMIN,
    responses={503: {"model": Problem}, **ERRORS},
)
def deploy(hub: Parts, body: DeploymentIn) -> DeploymentOut:
    kind, target = ("car", body.car) if body.car else ("group", body.group)
    assert target is not None
    return DeploymentOut(
        **hub.deployer.deploy(kind, target, body.model.name, body.model.version, body.requested_by)
    )


@router.get("/deployments/{kind}/{target}", summary="A target's current model and history", responses=ERRORS)
def deployment(hub: Parts, kind: KindPath, target: TargetPath) -> DeploymentOut:
    history = hub.catalog.deployment_history(kind, target)
    if not history:
        raise not_found(f"deployment of {kind} {target}")
    return DeploymentOut(**hub.deployer.status(kind, target), history=history)


@router.post(
    "/deployments/{kind}/{target}/rollback",
    summary="Go back to the model deployed before the current one",
    dependencies=ADMIN,
    responses=ERRORS,
)
def rollback(hub: Parts, kind: KindPath, target: TargetPath) -> DeploymentOut:
    if not hub.catalog.deployment_history(kind, target):
        raise not_found(f"deployment of {kind} {target}")
    return DeploymentOut(**hub.deployer.rollback(kind, target))


@router.delete(
    "/deployments/{kind}/{target}",
    summary="Clear a target's retained model message",
    dependencies=ADMIN,
    responses=ERRORS,
)
def clear(hub: Parts, kind: KindPath, target: TargetPath) -> DeploymentOut:
    return DeploymentOut(**hub.deployer.clear(kind, target))
