"""Canaries: a new model on one car of a group first, promoted or rolled back by the hub."""

from fastapi import APIRouter, HTTPException

from hub.api.deps import ADMIN, ERRORS, Parts, not_found
from hub.api.models import CanaryIn, NamePath, Problem
from hub.mlops.canary import Canary, CanaryController, CanaryError
from hub.mlops.release import Release

router = APIRouter(tags=["canaries"])


def _controller(hub: Parts) -> CanaryController:
    if hub.canaries is None:
        raise HTTPException(503, "this hub runs no canaries")
    return hub.canaries


@router.get("/canaries", summary="Every canary, running and decided, oldest first")
def canaries(hub: Parts) -> list[Canary]:
    return _controller(hub).all()


@router.post(
    "/canaries",
    summary="Try a model on a group's canary car first; the hub promotes or rolls back on its own",
    status_code=201,
    dependencies=ADMIN,
    responses={409: {"model": Problem}, **ERRORS},
)
def start(hub: Parts, body: CanaryIn) -> Canary:
    return start_canary(hub, body)


def start_canary(hub: Parts, body: CanaryIn) -> Canary:
    """Start a canary (``POST /canaries``, or ``POST /deployments`` to a canary group); a refusal
    (the gate's, with its figures) is the HTTP answer."""
    m = body.model
    try:
        return _controller(hub).start(body.group, m.name, m.version, body.cars, body.requested_by, body.force)
    except CanaryError as exc:
        raise HTTPException(exc.status, {"message": str(exc), **exc.detail}) from None


@router.get("/canaries/{canary}", summary="A canary: cars, window, figures, decision", responses=ERRORS)
def canary(hub: Parts, canary: NamePath) -> Canary:
    found = _controller(hub).get(canary)
    if found is None:
        raise not_found(f"canary {canary}")
    return found


@router.post(
    "/canaries/{canary}/promote",
    summary="Promote a running canary's model to its group now",
    dependencies=ADMIN,
    responses=ERRORS,
)
def promote(hub: Parts, canary: NamePath) -> Canary:
    try:
        return _controller(hub).promote(canary)
    except KeyError:
        raise not_found(f"canary {canary}") from None


@router.post(
    "/canaries/{canary}/rollback",
    summary="Roll a running canary back now",
    dependencies=ADMIN,
    responses=ERRORS,
)
def rollback(hub: Parts, canary: NamePath) -> Canary:
    try:
        return _controller(hub).rollback(canary)
    except KeyError:
        raise not_found(f"canary {canary}") from None


@router.get(
    "/releases",
    summary="Models of triggered train jobs and what the hub did with them ([mlops] auto_deploy)",
)
def releases(hub: Parts) -> list[Release]:
    return hub.releases() if hub.releases is not None else []
