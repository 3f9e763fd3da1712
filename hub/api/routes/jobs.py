"""Training, evaluation, optimisation and RL jobs: request (published on jobs/{kind}), list, follow."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from hub.api.deps import AUTH, ERRORS, Parts, not_found
from hub.api.models import JobIn, JobOut, NamePath
from hub.fleet.jobs import request_job

router = APIRouter(tags=["jobs"])


@router.get("/jobs", summary="Jobs, newest first")
def jobs(
    hub: Parts,
    kind: Annotated[Literal["train", "evaluate", "optimize", "rl"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobOut]:
    return [JobOut(**j) for j in hub.catalog.list_jobs(kind, limit)]


@router.post(
    "/jobs",
    summary="Request a train, evaluate, optimize or rl job (published on jobs/{kind})",
    status_code=201,
    dependencies=AUTH,
    responses=ERRORS,
)
def new_job(hub: Parts, body: JobIn) -> JobOut:
    entry = request_job(
        hub.catalog,
        hub.topics,
        hub.ingest.publish,
        body.kind,
        body.params,
        job=body.job,
        requested_by=body.requested_by,
    )
    return JobOut(**entry)


@router.get("/jobs/{job}", summary="A job with its progress history", responses=ERRORS)
def job(hub: Parts, job: NamePath, history: Annotated[int, Query(ge=0, le=1000)] = 200) -> JobOut:
    entry = hub.catalog.get_job(job)
    if entry is None:
        raise not_found(f"job {job}")
    return JobOut(**entry, history=hub.catalog.job_progress_history(job, history) if history else None)
