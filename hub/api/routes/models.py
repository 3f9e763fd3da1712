"""The model registry: register (upload), list, describe, download."""

import tempfile
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import Response, StreamingResponse

from hub.api.deps import ADMIN, ERRORS, Creds, Parts, has_download_grant, not_found, require_read_always
from hub.api.models import ModelOut, NamePath, Problem, SmokeTestIn
from hub.api.parts import ApiParts
from hub.api.routes.evaluations import with_file_urls
from hub.fleet.registry import Lineage, register_model
from schemas.errors import ContractError
from schemas.ids import NAME_PATTERN
from schemas.model_card import ModelCard

router = APIRouter(tags=["models"])
MAX_REPORT = 16 * 1024 * 1024


def _model_out(hub: ApiParts, row: dict[str, Any], detail: bool = False) -> ModelOut:
    url = f"{hub.public_url()}/models/{row['name']}/{row['version']}/artifact"
    out = ModelOut(**row, download_url=url)
    if detail:
        found = hub.catalog.evaluations(row["name"], row["version"])
        out.evaluations = [with_file_urls(hub, row["name"], row["version"], e) for e in found]
        out.deployments = hub.catalog.deployments_of_model(row["name"], row["version"])
    return out


def _model_row(hub: ApiParts, name: str, version: str) -> dict[str, Any]:
    row = hub.catalog.get_model(name, version)
    if row is None:
        raise not_found(f"model {name}:{version}")
    return row


@router.get("/models", summary="Registered models (optionally of one name)")
def models(hub: Parts, name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None) -> list[ModelOut]:
    return [_model_out(hub, r) for r in hub.catalog.list_models(name)]


def _lineage(text: str | None) -> Lineage:
    if not text:
        return Lineage()
    try:
        return Lineage.model_validate_json(text)
    except ValueError as exc:
        raise ContractError(f"invalid lineage: {str(exc).splitlines()[0]}") from None


def _report(report: UploadFile | None) -> bytes | None:
    if report is None or not report.filename:
        return None
    data = report.file.read(MAX_REPORT + 1)
    if len(data) > MAX_REPORT:
        raise HTTPException(413, "the report exceeds 16 MiB")
    return data


def _receive(artifact: IO[bytes], path: FsPath, limit_mb: float) -> None:
    """Copy the upload to ``path``, refusing it (413) once it passes ``limit_mb``."""
    limit = int(limit_mb * 1024 * 1024)
    copied = 0
    with path.open("wb") as out:
        while chunk := artifact.read(1024 * 1024):
            copied += len(chunk)
            if copied > limit:
                raise HTTPException(413, f"the artifact exceeds {limit_mb} MiB")
            out.write(chunk)


@router.post(
    "/models",
    summary="Register a model: artifact, card and lineage → name and version",
    status_code=201,
    dependencies=ADMIN,
    responses={413: {"model": Problem, "description": "artifact too large"}, **ERRORS},
)
def register(
    hub: Parts,
    artifact: Annotated[UploadFile, File(description="the model file (*.onnx or *.tflite)")],
    name: Annotated[str, Form(pattern=NAME_PATTERN)],
    card: Annotated[str, Form(description="ModelCard as JSON")],
    version: Annotated[str | None, Form(pattern=NAME_PATTERN, description="default: next integer")] = None,
    format: Annotated[Literal["onnx", "tflite"] | None, Form()] = None,
    lineage: Annotated[str | None, Form(description="JSON: dataset, run, job, parent, metrics")] = None,
    description: Annotated[str, Form(max_length=10_000)] = "",
    report: Annotated[UploadFile | None, File(description="training report (JSON)")] = None,
) -> ModelOut:
    model_card = ModelCard.from_json(card)
    lineage_model = _lineage(lineage)
    report_bytes = _report(report)
    with tempfile.TemporaryDirectory(prefix="paddock-upload-") as tmp:
        path = FsPath(tmp) / "artifact"
        _receive(artifact.file, path, hub.settings.max_upload_mb)
        row = register_model(
            hub.catalog,
            hub.store,
            name=name,
            artifact=path,
            card=model_card,
            version=version,
            fmt=format,
            filename=artifact.filename,
            lineage=lineage_model,
            description=description,
            report=report_bytes,
        )
    return _model_out(hub, row)


@router.get(
    "/models/{name}/{version}",
    summary="A model with its lineage, evaluations and deployments",
    responses=ERRORS,
)
def model(hub: Parts, name: NamePath, version: NamePath) -> ModelOut:
    return _model_out(hub, _model_row(hub, name, version), detail=True)


@router.post(
    "/models/{name}/{version}/smoke-tests",
    summary="Record the car's smoke test of a model (the evaluation gate reads the newest)",
    status_code=201,
    dependencies=ADMIN,
    responses=ERRORS,
)
def smoke_test(hub: Parts, name: NamePath, version: NamePath, body: SmokeTestIn) -> dict[str, Any]:
    _model_row(hub, name, version)
    metrics: dict[str, Any] = {"smoke_test_passed": body.passed}
    if body.latency_ms is not None:
        metrics["smoke_latency_ms"] = body.latency_ms
    details = {"smoke_reason": body.reason, "runtime": body.runtime, "tested_by": body.tested_by}
    hub.catalog.add_evaluation(name, version, None, metrics, details)
    return {"model": f"{name}:{version}", **metrics, **details}


@router.get(
    "/models/{name}/{version}/artifact",
    summary="Download the model file (cars use this URL for models too large to send inline)",
    responses={200: {"content": {"application/octet-stream": {}}}, **ERRORS},
    response_class=Response,
)
def artifact(
    hub: Parts,
    name: NamePath,
    version: NamePath,
    request: Request,
    creds: Creds,
    grant: Annotated[str | None, Query(max_length=64, description="the grant of a deployment's URL")] = None,
) -> StreamingResponse:
    """A read token, or the grant the hub put in the signed manifest's URL (cars have no token)."""
    if not has_download_grant(request, hub):
        require_read_always(hub, creds)
    row = _model_row(hub, name, version)
    fh = hub.store.open(row["artifact_key"])

    def chunks() -> Iterator[bytes]:
        try:
            while data := fh.read(1024 * 1024):
                yield data
        finally:
            fh.close()

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(row["size"]),
            "Content-Disposition": f'attachment; filename="{name}-{version}.{row["format"]}"',
            "X-Paddock-Sha256": row["sha256"],
        },
    )
