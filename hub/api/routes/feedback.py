"""The feedback dataset: frames where a model failed, labelled by the human or the teacher."""

from typing import Any

from fastapi import APIRouter, HTTPException

from hub.api.deps import ADMIN, ERRORS, Parts, not_found

router = APIRouter(tags=["feedback"])


@router.get(
    "/feedback", summary="The feedback dataset: its sessions (review them under /sessions)", responses=ERRORS
)
def feedback(hub: Parts) -> dict[str, Any]:
    manifest = hub.feedback() if hub.feedback is not None else None
    if manifest is None:
        raise not_found("feedback dataset (no feedback frames yet)")
    return manifest


@router.post(
    "/feedback/collect",
    summary="Read newly sealed sessions for feedback frames now (the hub also does it on its own)",
    dependencies=ADMIN,
    responses=ERRORS,
)
def collect(hub: Parts) -> dict[str, Any]:
    if hub.collect_feedback is None:
        raise HTTPException(503, "this hub collects no feedback")
    return hub.collect_feedback()
