"""Job dispatch: a train/evaluate/optimize/rl request becomes a catalog entry and a QoS 1 message on
``jobs/{kind}``; trainers report ``progress`` and ``result`` back, which ingest records (``hub.ingest``)."""

import secrets
import time
from typing import Any

from hub.storage.catalog import Catalog
from schemas.errors import ContractError
from schemas.ids import check_name
from schemas.messages import (
    EvaluateJob,
    EvaluateParams,
    OptimizeJob,
    OptimizeParams,
    RlJob,
    RlParams,
    TrainJob,
    TrainParams,
)
from schemas.topics import Topics


def new_job_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def request_job(
    catalog: Catalog,
    topics: Topics,
    publish: Any,
    kind: str,
    params: TrainParams | EvaluateParams | OptimizeParams | RlParams,
    *,
    job: str | None = None,
    requested_by: str | None = None,
) -> dict[str, Any]:
    """Validate references, record the job as queued, publish it. Returns the catalog entry."""
    job = check_name(job, "job id") if job else new_job_id(kind)
    request: TrainJob | EvaluateJob | OptimizeJob | RlJob
    if kind == "train" and isinstance(params, TrainParams):
        if params.dataset is not None and catalog.get_dataset(params.dataset) is None:
            raise ContractError(f"unknown dataset {params.dataset!r}")
        missing = [
            f"{r.car}/{r.session}" for r in params.sessions if catalog.get_session(r.car, r.session) is None
        ]
        if missing:
            raise ContractError(f"unknown sessions: {', '.join(missing[:20])}")
        if params.dataset is None and not params.sessions:
            raise ContractError("a train job needs a dataset or sessions")
        request = TrainJob(job=job, params=params, requested_by=requested_by, ts=time.time())
    elif kind == "evaluate" and isinstance(params, EvaluateParams):
        if catalog.get_model(params.model_name, params.model_version) is None:
            raise ContractError(f"unknown model {params.model_name}:{params.model_version}")
        request = EvaluateJob(job=job, params=params, requested_by=requested_by, ts=time.time())
    elif kind == "optimize" and isinstance(params, OptimizeParams):
        request = OptimizeJob(job=job, params=params, requested_by=requested_by, ts=time.time())
    elif kind == "rl" and isinstance(params, RlParams):
        clone = params.clone
        if clone is not None and catalog.get_model(clone.name, clone.version) is None:
            raise ContractError(f"unknown model {clone.name}:{clone.version} to clone")
        request = RlJob(job=job, params=params, requested_by=requested_by, ts=time.time())
    else:
        raise ContractError(f"params do not fit a {kind} job")
    catalog.create_job(job, kind, request.to_dict())
    published = publish(topics.job_request(kind), request.to_json(), qos=1, retain=False)
    catalog.set_job_published(job, published)
    entry = catalog.get_job(job)
    assert entry is not None
    return entry
