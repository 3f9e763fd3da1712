"""The feedback dataset: frames where a model failed, labelled by the human or the teacher."""

from typing import Any

from fastapi import APIRouter, HTTPException

from hub.api.deps import ADMIN, ERRORS, Parts

router = APIRouter(tags=["feedback"])


@router.get("/feedback", summary="The feedback dataset: its sessions (review them under /sessions)")
def feedback(hub: Parts) -> dict[str, Any]:
    if hub.feedback is None:
        raise HTTPException(503, "this hub collects no feedback")
    return hub.feedback()


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
