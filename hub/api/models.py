"""The API's request and response models and its path parameters (the OpenAPI schema is built from
these; docs/hub.md lists the routes)."""

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.mlops.canary import Canary
from schemas.dataset import SessionManifest
from schemas.ids import CAR_ID_PATTERN, GROUP_ID_PATTERN, NAME_PATTERN
from schemas.messages import EvaluateParams, OptimizeParams, RlParams, TrainParams

MAX_SEQ = 2**62

CarPath = Annotated[str, Path(pattern=CAR_ID_PATTERN, description="car id")]
SessionPath = Annotated[str, Path(pattern=NAME_PATTERN, description="session id")]
NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
KindPath = Annotated[Literal["car", "group"], Path(description="deploy to one car or to a group")]
TargetPath = Annotated[str, Path(pattern=CAR_ID_PATTERN, description="car or group id")]
SlotQuery = Annotated[
    Literal["pilot", "detector"],
    Query(description="the car's model slot: the pilot that drives or the detector beside it"),
]


class Problem(BaseModel):
    detail: str


class Ok(BaseModel):
    ok: bool = True


class CarOut(BaseModel):
    car: str
    state: Literal["online", "offline"]
    bdseq: int
    status: dict[str, Any] = Field(description="the last birth or death (CarStatus)")
    model_state: dict[str, Any] | None = Field(default=None, description="the pilot's last ModelState")
    detector_state: dict[str, Any] | None = Field(default=None, description="the detector's last ModelState")
    first_seen: float
    last_seen: float
    births: int
    stale_deaths: int
    telemetry: dict[str, Any] | None = Field(default=None, description="the last telemetry message")
    ingest: dict[str, int] = Field(default_factory=dict, description="this car's ingest counters")
    deployment: dict[str, Any] | None = Field(default=None, description="model assigned to this car")
    detector_deployment: dict[str, Any] | None = Field(
        default=None, description="detector (classifier) assigned to this car"
    )


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
    force: bool = Field(default=False, description="deploy even if the evaluation gate refuses (recorded)")
    canary: bool | None = Field(
        default=None,
        description="a group only: true starts a canary (one car first, the hub promotes or rolls back), "
        "false deploys to every car; default: a canary where `[mlops] canary_groups` names the group",
    )

    @model_validator(mode="after")
    def _one_target(self) -> "DeploymentIn":
        if (self.car is None) == (self.group is None):
            raise ValueError("give exactly one of car and group")
        if self.car is not None and self.canary:
            raise ValueError("a canary is for a group: give group, not car")
        return self


class SmokeTestIn(BaseModel):
    """The car's smoke test run on a model (``paddock hub smoke-test``), for the evaluation gate."""

    model_config = ConfigDict(extra="forbid")
    passed: bool
    reason: str | None = Field(default=None, max_length=1000, description="why it failed")
    latency_ms: float | None = Field(default=None, ge=0, le=1e6, description="median inference time")
    runtime: str | None = Field(default=None, max_length=100, description="e.g. onnxruntime 1.20 on x86_64")
    tested_by: str | None = Field(default=None, max_length=200)


class CanaryIn(BaseModel):
    """Try a model on one car (or ``[mlops] canary_cars``, or the ``cars`` named) of a group first."""

    model_config = ConfigDict(extra="forbid")
    model: ModelRefIn
    group: str = Field(pattern=GROUP_ID_PATTERN)
    cars: list[Annotated[str, Field(pattern=CAR_ID_PATTERN)]] | None = Field(
        default=None, max_length=1000, description="the canary cars (default: chosen by the hub)"
    )
    requested_by: str | None = Field(default=None, max_length=200)
    force: bool = Field(default=False, description="start even if the evaluation gate refuses (recorded)")


class DeploymentOut(BaseModel):
    target_kind: Literal["car", "group"]
    target: str
    slot: Literal["pilot", "detector"] = Field(
        default="pilot", description="the model slot: a classifier's card goes to the detector"
    )
    topic: str
    current: dict[str, str] | None = Field(description="the model assigned now (None: nothing)")
    last_action: Literal["deploy", "rollback", "clear"] | None
    updated: float | None
    can_roll_back: bool
    published: bool | None = Field(default=None, description="the broker acknowledged the retained message")
    history: list[dict[str, Any]] | None = None
    gate: dict[str, Any] | None = Field(default=None, description="the evaluation gate's decision")
    canary: Canary | None = Field(
        default=None, description="the canary started instead (the group keeps its model until promoted)"
    )


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


class RlJobIn(_JobIn):
    kind: Literal["rl"]
    params: RlParams


JobIn = Annotated[TrainJobIn | EvaluateJobIn | OptimizeJobIn | RlJobIn, Field(discriminator="kind")]


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
    trainer: str | None = Field(default=None, description="the trainer that took the job (its first report)")
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


class EStopOut(BaseModel):
    active: bool = False
    reason: str = ""
    ts: float | None = Field(default=None, description="when it was set (None: never, as the broker knows)")


class WhoAmI(BaseModel):
    scope: Literal["read", "operate", "admin"]
