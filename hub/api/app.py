"""The REST API (FastAPI; OpenAPI at /docs and /openapi.json).

Read routes are open on the LAN (``api.protect_reads`` closes them); every route that changes
something needs ``Authorization: Bearer <token>``. Bad input is a 4xx with a ``detail`` message:
ids are checked against the same patterns the wire uses, so no id can reach outside the store.
The route list is kept in docs/hub.md.
"""

import dataclasses
import hmac
import logging
import secrets
import tempfile
import time
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, HTTPException, Path, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.fleet.deployments import NotFound
from hub.fleet.registry import DatasetRequest, Lineage, create_dataset, register_model
from hub.fleet.sessions import export_tar, read_frame, thumbnail
from hub.storage.catalog import CatalogError, Conflict
from hub.storage.sealer import SessionNotFound, manifest_from_row
from infra.store import NoSuchKey, StoreError
from schemas import __version__
from schemas.dataset import DatasetManifest, SessionManifest
from schemas.errors import ContractError
from schemas.ids import CAR_ID_PATTERN, GROUP_ID_PATTERN, NAME_PATTERN
from schemas.messages import (
    COMMAND_MODELS,
    EStop,
    EvaluateParams,
    OptimizeParams,
    TrainParams,
)
from schemas.model_card import ModelCard
from schemas.topics import COMMAND_NAMES

if TYPE_CHECKING:
    from hub.service import HubService

log = logging.getLogger(__name__)

MAX_SEQ = 2**62

CarPath = Annotated[str, Path(pattern=CAR_ID_PATTERN, description="car id")]
SessionPath = Annotated[str, Path(pattern=NAME_PATTERN, description="session id")]
NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
KindPath = Annotated[Literal["car", "group"], Path(description="deploy to one car or to a group")]
TargetPath = Annotated[str, Path(pattern=CAR_ID_PATTERN, description="car or group id")]


# --- request and response models ------------------------------------------------------------------
class Problem(BaseModel):
    detail: str


class Ok(BaseModel):
    ok: bool = True


class CarOut(BaseModel):
    car: str
    state: Literal["online", "offline"]
    bdseq: int
    status: dict[str, Any] = Field(description="the last birth or death (CarStatus)")
    model_state: dict[str, Any] | None = Field(default=None, description="the last ModelState")
    first_seen: float
    last_seen: float
    births: int
    stale_deaths: int
    telemetry: dict[str, Any] | None = Field(default=None, description="the last telemetry message")
    ingest: dict[str, int] = Field(default_factory=dict, description="this car's ingest counters")
    deployment: dict[str, Any] | None = Field(default=None, description="model assigned to this car")


class FleetOut(BaseModel):
    cars: int
    cars_online: int
    sessions: int
    frames_persisted: int
    frames_sealed: int
    missing: int
    gaps: int
    duplicates: int
    malformed: int
    hub: dict[str, Any]


class SessionOut(SessionManifest):
    bytes: int = 0
    trimmed: list[tuple[int, int]] = Field(default_factory=list, description="seq ranges removed on purpose")
    datasets: list[str] = Field(default_factory=list, description="datasets that use this session")


class SessionList(BaseModel):
    total: int
    sessions: list[SessionOut]


class TrimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: int = Field(ge=0, le=MAX_SEQ, description="first seq to remove")
    end: int = Field(ge=0, le=MAX_SEQ, description="last seq to remove (inclusive)")

    @model_validator(mode="after")
    def _order(self) -> "TrimIn":
        if self.start > self.end:
            raise ValueError("start must not be after end")
        return self


class FlushOut(BaseModel):
    sealed: bool
    ingest: dict[str, Any]


class ModelOut(BaseModel):
    name: str
    version: str
    format: Literal["onnx", "tflite"]
    sha256: str
    size: int
    card: dict[str, Any]
    lineage: dict[str, Any]
    description: str
    artifact_key: str
    created: float
    download_url: str
    evaluations: list[dict[str, Any]] = Field(default_factory=list)
    deployments: list[dict[str, Any]] = Field(default_factory=list)


class ModelRefIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=NAME_PATTERN)


class DeploymentIn(BaseModel):
    """Assign a model to one car or to a group of cars (exactly one of ``car`` and ``group``)."""

    model_config = ConfigDict(extra="forbid")
    model: ModelRefIn
    car: str | None = Field(default=None, pattern=CAR_ID_PATTERN)
    group: str | None = Field(default=None, pattern=GROUP_ID_PATTERN)
    requested_by: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_target(self) -> "DeploymentIn":
        if (self.car is None) == (self.group is None):
            raise ValueError("give exactly one of car and group")
        return self


class DeploymentOut(BaseModel):
    target_kind: Literal["car", "group"]
    target: str
    topic: str
    current: dict[str, str] | None = Field(description="the model assigned now (None: nothing)")
    last_action: Literal["deploy", "rollback", "clear"] | None
    updated: float | None
    can_roll_back: bool
    published: bool | None = Field(default=None, description="the broker acknowledged the retained message")
    history: list[dict[str, Any]] | None = None


class _JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job: str | None = Field(default=None, pattern=NAME_PATTERN, description="job id (generated when absent)")
    requested_by: str | None = Field(default=None, max_length=200)


class TrainJobIn(_JobIn):
    kind: Literal["train"]
    params: TrainParams


class EvaluateJobIn(_JobIn):
    kind: Literal["evaluate"]
    params: EvaluateParams


class OptimizeJobIn(_JobIn):
    kind: Literal["optimize"]
    params: OptimizeParams


JobIn = Annotated[TrainJobIn | EvaluateJobIn | OptimizeJobIn, Field(discriminator="kind")]


class JobOut(BaseModel):
    job: str
    kind: str
    state: str
    request: dict[str, Any] | None
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    published: bool
    created: float
    updated: float
    history: list[dict[str, Any]] | None = None


class KeyOut(BaseModel):
    algorithm: Literal["ed25519"] = "ed25519"
    key_id: str
    public_key_pem: str


class CommandOut(BaseModel):
    transaction: str
    published: bool
    response: dict[str, Any] | None = Field(default=None, description="the car's response, if waited for")


class EStopIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: bool
    reason: str = Field(default="", max_length=500)


# --- the app --------------------------------------------------------------------------------------
def create_app(hub: "HubService") -> FastAPI:
    bearer = HTTPBearer(auto_error=False, description="the hub's API token")

    def require_token(creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> None:
        if creds is None or not hmac.compare_digest(creds.credentials.encode(), hub.api_token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    read_deps = [Depends(require_token)] if hub.config.api.protect_reads else []
    Auth = [Depends(require_token)]
    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem, "description": "missing or wrong token"},
        404: {"model": Problem, "description": "not found"},
        409: {"model": Problem, "description": "conflicts with the current state"},
        422: {"model": Problem, "description": "invalid input"},
    }

    app = FastAPI(
        title="paddock hub",
        version=__version__,
        description="Ingest, sessions, datasets, models, signed deployments and jobs of a paddock fleet.",
        dependencies=read_deps,
        responses={422: {"model": Problem, "description": "invalid input"}},
    )

    # -- errors: always a 4xx with a message for bad input, 503 when a backing store fails --
    @app.exception_handler(ContractError)
    async def _contract(_r: Request, exc: ContractError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Conflict)
    async def _conflict(_r: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(NotFound)
    @app.exception_handler(SessionNotFound)
    @app.exception_handler(NoSuchKey)
    async def _missing(_r: Request, exc: KeyError) -> JSONResponse:
        return JSONResponse({"detail": f"not found: {exc.args[0] if exc.args else ''}"}, status_code=404)

    @app.exception_handler(StoreError)
    @app.exception_handler(CatalogError)
    async def _unavailable(_r: Request, exc: Exception) -> JSONResponse:
        log.error("backing store failed: %s", exc)
        return JSONResponse({"detail": f"storage unavailable: {exc}"}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    def not_found(what: str) -> HTTPException:
        return HTTPException(404, f"not found: {what}")

    def session_out(row: dict[str, Any]) -> SessionOut:
        manifest = manifest_from_row(row)
        return SessionOut(
            **manifest.model_dump(),
            bytes=row["bytes"],
            trimmed=[(a, b) for a, b in row["trimmed"]],
            datasets=hub.catalog.datasets_using(row["car"], row["session"]),
        )

    def model_out(row: dict[str, Any], detail: bool = False) -> ModelOut:
        out = ModelOut(**row, download_url=f"{hub.public_url}/models/{row['name']}/{row['version']}/artifact")
        if detail:
            out.evaluations = hub.catalog.evaluations(row["name"], row["version"])
            out.deployments = hub.catalog.deployments_of_model(row["name"], row["version"])
        return out

    # -- health and metrics --
    @app.get("/health", tags=["hub"], summary="Component health (MQTT, spool, store, sinks)")
    def health() -> dict[str, Any]:
        return hub.health()

    @app.get("/metrics", tags=["hub"], summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        return Response(generate_latest(hub.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/ingest", tags=["hub"], summary="Ingest counters: persisted, sealed, lost, malformed, per car")
    def ingest() -> dict[str, Any]:
        return hub.ingest_stats().to_dict()

    @app.post(
        "/ingest/flush",
        tags=["hub"],
        summary="Seal every durable frame into shards now",
        dependencies=Auth,
        responses=errors,
    )
    def flush(timeout: Annotated[float, Query(gt=0, le=600)] = 60.0) -> FlushOut:
        sealed = hub.sealer.flush(timeout)
        return FlushOut(sealed=sealed, ingest=hub.ingest_stats().to_dict())

    @app.get("/keys", tags=["hub"], summary="The hub's public signing key (for provisioning cars)")
    def keys() -> KeyOut:
        return KeyOut(key_id=hub.key_id, public_key_pem=hub.public_key_pem)

    @app.get(
        "/keys/public.pem",
        tags=["hub"],
        summary="The public key as a PEM file",
        response_class=PlainTextResponse,
    )
    def public_pem() -> Response:
        return Response(
            hub.public_key_pem,
            media_type="application/x-pem-file",
            headers={"Content-Disposition": 'attachment; filename="paddock-hub.pub.pem"'},
        )

    # -- fleet and cars --
    @app.get("/fleet", tags=["fleet"], summary="Fleet summary")
    def fleet() -> FleetOut:
        cars = hub.catalog.list_cars()
        stats = hub.ingest_stats()
        _, sessions = hub.catalog.list_sessions(limit=1)
        return FleetOut(
            cars=len(cars),
            cars_online=sum(1 for c in cars if c["state"] == "online"),
            sessions=sessions,
            frames_persisted=stats.frames_persisted,
            frames_sealed=stats.frames_sealed,
            missing=stats.missing,
            gaps=stats.gaps,
            duplicates=stats.duplicates,
            malformed=stats.malformed,
            hub={
                "mqtt_connected": hub.ingest.connected.is_set(),
                "api_url": hub.public_url,
                "version": __version__,
            },
        )

    def car_out(row: dict[str, Any]) -> CarOut:
        car = row["car"]
        c = hub.counters.cars.get(car)
        return CarOut(
            **row,
            telemetry=hub.ingest.last_telemetry.get(car),
            ingest={} if c is None else dataclasses.asdict(c),
            deployment=hub.deployer.status("car", car)["current"]
            if hub.catalog.deployment_history("car", car)
            else None,
        )

    @app.get("/cars", tags=["fleet"], summary="Every car the hub has heard of")
    def cars() -> list[CarOut]:
        return [car_out(r) for r in hub.catalog.list_cars()]

    @app.get(
        "/cars/{car}",
        tags=["fleet"],
        summary="One car: status, model state, last telemetry",
        responses=errors,
    )
    def car(car: CarPath) -> CarOut:
        row = hub.catalog.get_car(car)
        if row is None:
            raise not_found(f"car {car}")
        return car_out(row)

    @app.get(
        "/cars/{car}/telemetry", tags=["fleet"], summary="Recent telemetry (SQLite sink)", responses=errors
    )
    def car_telemetry(
        car: CarPath,
        since: Annotated[float | None, Query(ge=0, description="epoch seconds")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        if hub.sqlite_sink is None:
            raise HTTPException(404, "the SQLite telemetry sink is disabled")
        return hub.sqlite_sink.telemetry(car, since, limit)

    @app.get("/cars/{car}/events", tags=["fleet"], summary="Recent events (SQLite sink)", responses=errors)
    def car_events(
        car: CarPath,
        since: Annotated[float | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        type: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    ) -> list[dict[str, Any]]:
        if hub.sqlite_sink is None:
            raise HTTPException(404, "the SQLite telemetry sink is disabled")
        return hub.sqlite_sink.events(car, since, limit, type)

    @app.get(
        "/cars/{car}/preview",
        tags=["fleet"],
        summary="The latest preview (QoS 0) frame of a car",
        responses={200: {"content": {"image/jpeg": {}}}, **errors},
        response_class=Response,
    )
    def preview(car: CarPath) -> Response:
        from schemas.payloads import decode_frame

        item = hub.ingest.last_preview.get(car)
        if item is None:
            raise not_found(f"preview of {car}")
        try:
            _, jpeg = decode_frame(item[1])
        except ContractError:
            raise not_found(f"preview of {car}") from None
        return Response(jpeg, media_type="image/jpeg")

    @app.post(
        "/cars/{car}/commands/{name}",
        tags=["fleet"],
        summary="Send a command (drive, mode, record, config, rebirth) to a car",
        dependencies=Auth,
        responses=errors,
    )
    def command(
        car: CarPath,
        name: Annotated[Literal["drive", "mode", "record", "config", "rebirth"], Path()],
        body: dict[str, Any],
        wait: Annotated[float, Query(ge=0, le=30, description="seconds to wait for the car's response")] = 0,
    ) -> CommandOut:
        assert name in COMMAND_NAMES
        transaction = body.get("transaction") or secrets.token_hex(8)
        if not isinstance(transaction, str):
            raise ContractError("transaction must be a string")
        cmd = COMMAND_MODELS[name].from_dict({**body, "transaction": transaction})
        qos = 0 if name == "drive" else 1
        published = hub.ingest.publish(hub.topics.command(car, name), cmd.to_json(), qos=qos)
        response = hub.ingest.wait_response(transaction, wait) if wait > 0 and published else None
        return CommandOut(transaction=transaction, published=published, response=response)

    @app.post(
        "/fleet/estop",
        tags=["fleet"],
        summary="Set or release the fleet e-stop (retained)",
        dependencies=Auth,
        responses=errors,
    )
    def estop(body: EStopIn) -> Ok:
        msg = EStop(active=body.active, reason=body.reason, ts=time.time())
        if not hub.ingest.publish(hub.topics.fleet_estop(), msg.to_json(), qos=1, retain=True):
            raise HTTPException(503, "the broker did not acknowledge the e-stop")
        return Ok()

    # -- sessions --
    @app.get("/sessions", tags=["sessions"], summary="Recorded sessions, newest first")
    def sessions(
        car: Annotated[str | None, Query(pattern=CAR_ID_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    ) -> SessionList:
        rows, total = hub.catalog.list_sessions(car, limit, offset)
        return SessionList(total=total, sessions=[session_out(r) for r in rows])

    def session_row(car: str, session: str) -> dict[str, Any]:
        row = hub.catalog.get_session(car, session)
        if row is None:
            raise not_found(f"session {car}/{session}")
        return row

    @app.get("/sessions/{car}/{session}", tags=["sessions"], summary="A session's manifest", responses=errors)
    def session(car: CarPath, session: SessionPath) -> SessionOut:
        return session_out(session_row(car, session))

    @app.delete(
        "/sessions/{car}/{session}",
        tags=["sessions"],
        summary="Delete a session (its shards, manifest and catalog entry)",
        status_code=204,
        dependencies=Auth,
        responses=errors,
    )
    def delete_session(
        car: CarPath,
        session: SessionPath,
        force: Annotated[bool, Query(description="delete even if datasets use it")] = False,
    ) -> Response:
        session_row(car, session)
        using = hub.catalog.datasets_using(car, session)
        if using and not force:
            raise Conflict(f"session {car}/{session} is used by datasets {', '.join(using)} (use force=true)")
        hub.sealer.delete(car, session)
        return Response(status_code=204)

    @app.post(
        "/sessions/{car}/{session}/trim",
        tags=["sessions"],
        summary="Remove the frames start..end (inclusive) from a session",
        dependencies=Auth,
        responses=errors,
    )
    def trim(car: CarPath, session: SessionPath, body: TrimIn) -> SessionOut:
        session_row(car, session)
        hub.sealer.trim(car, session, body.start, body.end)
        return session_out(session_row(car, session))

    @app.get(
        "/sessions/{car}/{session}/thumbnail",
        tags=["sessions"],
        summary="A frame of the session as a small JPEG (default: the middle frame)",
        responses={200: {"content": {"image/jpeg": {}}}, **errors},
        response_class=Response,
    )
    def session_thumbnail(
        car: CarPath,
        session: SessionPath,
        seq: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
        size: Annotated[int, Query(ge=16, le=1024)] = 160,
    ) -> Response:
        manifest = manifest_from_row(session_row(car, session))
        sample = read_frame(hub.store, manifest, seq)
        if sample is None:
            raise not_found(f"frame {seq} of {car}/{session}")
        try:
            data = thumbnail(sample.jpeg, size)
        except OSError:
            raise HTTPException(
                422, f"frame {sample.seq} of {car}/{session} is not a decodable JPEG"
            ) from None
        return Response(data, media_type="image/jpeg", headers={"X-Paddock-Seq": str(sample.seq)})

    @app.get(
        "/sessions/{car}/{session}/export",
        tags=["sessions"],
        summary="The session as a tar: manifest.json and shards, laid out as in the store",
        responses={200: {"content": {"application/x-tar": {}}}, **errors},
        response_class=Response,
    )
    def export(car: CarPath, session: SessionPath) -> StreamingResponse:
        manifest = manifest_from_row(session_row(car, session))
        return StreamingResponse(
            export_tar(hub.store, manifest),
            media_type="application/x-tar",
            headers={"Content-Disposition": f'attachment; filename="{car}-{session}.tar"'},
        )

    # -- datasets --
    @app.get("/datasets", tags=["datasets"], summary="Named datasets")
    def datasets() -> list[DatasetManifest]:
        return [DatasetManifest.from_dict(d) for d in hub.catalog.list_datasets()]

    @app.post(
        "/datasets",
        tags=["datasets"],
        summary="Create a dataset from sessions, split into train/val by session",
        status_code=201,
        dependencies=Auth,
        responses=errors,
    )
    def new_dataset(body: DatasetRequest) -> DatasetManifest:
        return create_dataset(hub.catalog, hub.store, body)

    @app.get("/datasets/{name}", tags=["datasets"], summary="A dataset's manifest", responses=errors)
    def dataset(name: NamePath) -> DatasetManifest:
        d = hub.catalog.get_dataset(name)
        if d is None:
            raise not_found(f"dataset {name}")
        return DatasetManifest.from_dict(d)

    @app.delete(
        "/datasets/{name}",
        tags=["datasets"],
        summary="Delete a dataset (not its sessions)",
        status_code=204,
        dependencies=Auth,
        responses=errors,
    )
    def delete_dataset(name: NamePath) -> Response:
        if not hub.catalog.delete_dataset(name):
            raise not_found(f"dataset {name}")
        return Response(status_code=204)

    # -- models --
    @app.get("/models", tags=["models"], summary="Registered models (optionally of one name)")
    def models(name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None) -> list[ModelOut]:
        return [model_out(r) for r in hub.catalog.list_models(name)]

    @app.post(
        "/models",
        tags=["models"],
        summary="Register a model: artifact, card and lineage → name and version",
        status_code=201,
        dependencies=Auth,
        responses={413: {"model": Problem, "description": "artifact too large"}, **errors},
    )
    def register(
        artifact: Annotated[UploadFile, File(description="the model file (*.onnx or *.tflite)")],
        name: Annotated[str, Form(pattern=NAME_PATTERN)],
        card: Annotated[str, Form(description="ModelCard as JSON")],
        version: Annotated[
            str | None, Form(pattern=NAME_PATTERN, description="default: next integer")
        ] = None,
        format: Annotated[Literal["onnx", "tflite"] | None, Form()] = None,
        lineage: Annotated[str | None, Form(description="JSON: dataset, run, job, parent, metrics")] = None,
        description: Annotated[str, Form(max_length=10_000)] = "",
        report: Annotated[UploadFile | None, File(description="training report (JSON)")] = None,
    ) -> ModelOut:
        model_card = ModelCard.from_json(card)
        if lineage:
            try:
                lineage_model = Lineage.model_validate_json(lineage)
            except ValueError as exc:
                raise ContractError(f"invalid lineage: {str(exc).splitlines()[0]}") from None
        else:
            lineage_model = Lineage()
        limit = int(hub.config.api.max_upload_mb * 1024 * 1024)
        report_bytes = None
        if report is not None and report.filename:
            report_bytes = report.file.read(16 * 1024 * 1024 + 1)
            if len(report_bytes) > 16 * 1024 * 1024:
                raise HTTPException(413, "the report exceeds 16 MiB")
        with tempfile.TemporaryDirectory(prefix="paddock-upload-") as tmp:
            path = FsPath(tmp) / "artifact"
            copied = 0
            with path.open("wb") as out:
                while chunk := artifact.file.read(1024 * 1024):
                    copied += len(chunk)
                    if copied > limit:
                        raise HTTPException(413, f"the artifact exceeds {hub.config.api.max_upload_mb} MiB")
                    out.write(chunk)
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
        return model_out(row)

    def model_row(name: str, version: str) -> dict[str, Any]:
        row = hub.catalog.get_model(name, version)
        if row is None:
            raise not_found(f"model {name}:{version}")
        return row

    @app.get(
        "/models/{name}/{version}",
        tags=["models"],
        summary="A model with its lineage, evaluations and deployments",
        responses=errors,
    )
    def model(name: NamePath, version: NamePath) -> ModelOut:
        return model_out(model_row(name, version), detail=True)

    @app.get(
        "/models/{name}/{version}/artifact",
        tags=["models"],
        summary="Download the model file (cars use this URL for models too large to send inline)",
        responses={200: {"content": {"application/octet-stream": {}}}, **errors},
        response_class=Response,
    )
    def artifact(name: NamePath, version: NamePath) -> StreamingResponse:
        row = model_row(name, version)
        fh = hub.store.open(row["artifact_key"])

        def chunks() -> Any:
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

    # -- deployments --
    @app.get("/deployments", tags=["deployments"], summary="The current model of every target")
    def deployments() -> list[DeploymentOut]:
        return [DeploymentOut(**d) for d in hub.deployer.all_status()]

    @app.post(
        "/deployments",
        tags=["deployments"],
        summary="Deploy a model to a car or group: a signed, retained envelope",
        status_code=201,
        dependencies=Auth,
        responses={503: {"model": Problem}, **errors},
    )
    def deploy(body: DeploymentIn) -> DeploymentOut:
        kind, target = ("car", body.car) if body.car else ("group", body.group)
        assert target is not None
        return DeploymentOut(
            **hub.deployer.deploy(kind, target, body.model.name, body.model.version, body.requested_by)
        )

    @app.get(
        "/deployments/{kind}/{target}",
        tags=["deployments"],
        summary="A target's current model and history",
        responses=errors,
    )
    def deployment(kind: KindPath, target: TargetPath) -> DeploymentOut:
        history = hub.catalog.deployment_history(kind, target)
        if not history:
            raise not_found(f"deployment of {kind} {target}")
        return DeploymentOut(**hub.deployer.status(kind, target), history=history)

    @app.post(
        "/deployments/{kind}/{target}/rollback",
        tags=["deployments"],
        summary="Go back to the model deployed before the current one",
        dependencies=Auth,
        responses=errors,
    )
    def rollback(kind: KindPath, target: TargetPath) -> DeploymentOut:
        if not hub.catalog.deployment_history(kind, target):
            raise not_found(f"deployment of {kind} {target}")
        return DeploymentOut(**hub.deployer.rollback(kind, target))

    @app.delete(
        "/deployments/{kind}/{target}",
        tags=["deployments"],
        summary="Clear a target's retained model message",
        dependencies=Auth,
        responses=errors,
    )
    def clear(kind: KindPath, target: TargetPath) -> DeploymentOut:
        return DeploymentOut(**hub.deployer.clear(kind, target))

    # -- jobs --
    @app.get("/jobs", tags=["jobs"], summary="Jobs, newest first")
    def jobs(
        kind: Annotated[Literal["train", "evaluate", "optimize"] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[JobOut]:
        return [JobOut(**j) for j in hub.catalog.list_jobs(kind, limit)]

    @app.post(
        "/jobs",
        tags=["jobs"],
        summary="Request a train, evaluate or optimize job (published on jobs/{kind})",
        status_code=201,
        dependencies=Auth,
        responses=errors,
    )
    def new_job(body: JobIn) -> JobOut:
        from hub.fleet.jobs import request_job

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

    @app.get("/jobs/{job}", tags=["jobs"], summary="A job with its progress history", responses=errors)
    def job(job: NamePath, history: Annotated[int, Query(ge=0, le=1000)] = 200) -> JobOut:
        entry = hub.catalog.get_job(job)
        if entry is None:
            raise not_found(f"job {job}")
        return JobOut(**entry, history=hub.catalog.job_progress_history(job, history) if history else None)

    @app.middleware("http")
    async def _server_header(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response: Response = await call_next(request)
        response.headers["X-Paddock-Hub"] = __version__
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
        return response

    return app
