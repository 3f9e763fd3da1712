"""JSON payloads of the topic tree (docs/wire.md "Topics"), one model per payload.

Conventions: ``ts`` is wall-clock seconds since the epoch; steering and throttle are in [-1, 1]
(steering -1 is full left, +1 full right, as in DonkeyCar; throttle > 0 drives forward); ``seq``
counts the messages of one stream (frames, telemetry, events) from 0 at each car boot and never wraps.
"""

import math
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from schemas.base import WireModel, _summary, now
from schemas.errors import ContractError
from schemas.ids import JobId, Name, SessionId
from schemas.input_stats import InputStats

Mode = Literal["manual", "autopilot", "stop"]
Unit = Annotated[float, Field(ge=-1.0, le=1.0)]
Seq = Annotated[int, Field(ge=0)]
Timestamp = Annotated[float, Field(default_factory=now, ge=0)]

# Bounds of a frame record (docs/security.md, "Hostile input"): every number a sealer, a catalog or
# a trainer stores must fit what they store it in, so one hostile frame cannot fail its session.
MAX_FRAME_SEQ = 2**53  # exact in a float64, so JSON readers in any language agree
MAX_T_CAPTURE_NS = 2**63  # an int64
MAX_SPEED = 100.0  # m/s: far above any model car, far below an overflow
MAX_EXTRA_DEPTH = 8
FrameSeq = Annotated[int, Field(strict=True, ge=0, lt=MAX_FRAME_SEQ)]


# --- presence ------------------------------------------------------------------------------------
class HubStatus(WireModel):
    """Retained on ``hub/status``; the offline form is the hub's last will."""

    state: Literal["online", "offline"]
    version: str = ""
    ts: Timestamp
    api_url: str | None = None


class CameraInfo(WireModel):
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    fps: float = Field(gt=0)
    kind: str = ""


class CarStatus(WireModel):
    """Birth (online) and death (offline, the last will) on ``cars/{car}/status``.

    ``bdseq`` increases with every connection of the car; a death whose ``bdseq`` is older than the
    current birth is stale and must be ignored.
    """

    state: Literal["online", "offline"]
    bdseq: Seq
    ts: Timestamp
    sw_version: str = ""
    mode: Mode | None = None
    model: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    camera: CameraInfo | None = None


# --- telemetry -----------------------------------------------------------------------------------
class Telemetry(WireModel):
    """Periodic state of one car (QoS 0). Every numeric field becomes an InfluxDB field."""

    seq: Seq
    ts: Timestamp
    mode: Mode
    session: SessionId | None = None
    model: str | None = None
    recording: bool = False
    steering: Unit = 0.0
    throttle: Unit = 0.0
    speed: float | None = Field(default=None, description="m/s, measured or simulated")
    loop_hz: float | None = Field(default=None, ge=0, description="configured control rate")
    loop_period_ms: float | None = Field(default=None, ge=0, description="mean tick period since last report")
    loop_late_p50_ms: float | None = Field(default=None, ge=0)
    loop_late_p99_ms: float | None = Field(default=None, ge=0)
    missed_ticks: int | None = Field(default=None, ge=0, description="ticks skipped since boot")
    inference_ms: float | None = Field(default=None, ge=0)
    battery_v: float | None = None
    cpu_temp_c: float | None = None
    lap: int | None = Field(default=None, ge=0)
    progress: float | None = Field(default=None, ge=0, le=100, description="lap progress % (sim)")
    off_track: bool | None = None
    frames_dropped: int | None = Field(default=None, ge=0, description="publish drops since boot")
    spool_frames: int | None = Field(default=None, ge=0, description="frames waiting in the car's spool")
    # model health (optional: older cars do not send them)
    confidence: float | None = Field(
        default=None, ge=0, le=1, description="mean output confidence since last report (categorical models)"
    )
    interventions: int | None = Field(
        default=None, ge=0, description="interventions since boot: human takeover, deadman, safety rule"
    )
    off_track_count: int | None = Field(default=None, ge=0, description="off-track moments since boot")
    lap_time_s: float | None = Field(default=None, gt=0, description="the last completed lap's time")
    input_stats: InputStats | None = Field(
        default=None, description="the camera images since the previous stats (sent at a low rate)"
    )
    # the detector (optional: a car without one sends none of these)
    detector: str | None = Field(default=None, description="the detector model (name:version)")
    obstacle: str | None = Field(default=None, description="the detector's last obstacle-ahead class")
    obstacle_p: float | None = Field(default=None, ge=0, le=1, description="its probability")
    surface: str | None = Field(default=None, description="the detector's last surface class")
    detector_ms: float | None = Field(
        default=None, ge=0, description="mean detector inference since last report"
    )
    safety_hold: bool | None = Field(default=None, description="the safety rule holds the car now")


# --- frames --------------------------------------------------------------------------------------
class ActionLabel(WireModel):
    """What a teacher would have done for an image, when that differs from what the car did."""

    steering: Unit
    throttle: Unit


MAX_LIDAR_BEAMS = 4096


class LidarRecord(WireModel):
    """The lidar scan recorded with a frame (where the body has a lidar): when it was taken and
    every beam's range in metres, first beam on the right, evenly spread over ``fov_deg``. The hub
    writes these into the session's ``lidar.csv`` (docs/wire.md, "Storage layout")."""

    t_capture_ns: int = Field(strict=True, ge=0, lt=MAX_T_CAPTURE_NS)
    ranges: list[Annotated[float, Field(ge=0, le=1e4)]] = Field(min_length=1, max_length=MAX_LIDAR_BEAMS)
    min_range: float = Field(ge=0, le=1e4)
    max_range: float = Field(gt=0, le=1e4)
    fov_deg: float = Field(gt=0, le=360)


class FrameRecord(WireModel):
    """Header of a frame envelope: one training record (the action travels with its image).

    Extra keys are kept (sensors, sim ground truth) so a recorder can add what it knows.
    """

    model_config = WireModel.model_config | {"extra": "allow"}

    car: str
    session: SessionId
    seq: FrameSeq
    t_capture_ns: int = Field(strict=True, ge=0, lt=MAX_T_CAPTURE_NS)
    steering: Unit
    throttle: Unit
    mode: Mode
    model: str | None = None
    speed: float | None = Field(default=None, ge=-MAX_SPEED, le=MAX_SPEED)
    width: int | None = Field(default=None, gt=0, le=65535)
    height: int | None = Field(default=None, gt=0, le=65535)
    preview: bool = Field(
        default=False,
        description="a live-view frame outside any recording; the hub shows it and does not store it",
    )
    label: ActionLabel | None = Field(
        default=None,
        description="a teacher's action for this image when the car applied another one (noise-injection "
        "recording, as in DART); learners prefer it to `steering`/`throttle`",
    )
    lidar: LidarRecord | None = Field(
        default=None, description="the lidar's scan taken with this frame, where the car has a lidar"
    )

    @model_validator(mode="after")
    def _bounded_extras(self) -> "FrameRecord":
        """Extra keys (sensors, ground truth) are kept, so their numbers are bounded too."""
        for key, value in (self.model_extra or {}).items():
            reason = _unbounded(value, MAX_EXTRA_DEPTH)
            if reason:
                raise ValueError(f"extra field {key!r}: {reason}")
        return self


def _unbounded(value: Any, depth: int) -> str | None:
    """Why an extra value could poison a reader (too deep, a huge int, a non-finite float), or None."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        return None if -(2**63) <= value < 2**63 else "integer outside int64"
    if isinstance(value, float):
        return None if math.isfinite(value) else "not a finite number"
    if depth <= 0:
        return f"nested deeper than {MAX_EXTRA_DEPTH}"
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    if items is None:
        return f"unexpected {type(value).__name__}"
    for item in items:
        reason = _unbounded(item, depth - 1)
        if reason:
            return reason
    return None


# --- events --------------------------------------------------------------------------------------
class _Event(WireModel):
    seq: Seq = 0
    ts: Timestamp


class LapEvent(_Event):
    type: Literal["lap"] = "lap"
    lap: int = Field(ge=1)
    lap_time_s: float = Field(gt=0)
    off_track_count: int = Field(default=0, ge=0)
    model: str | None = None
    mode: Mode | None = None


class OffTrackEvent(_Event):
    type: Literal["off_track"] = "off_track"
    progress: float | None = Field(default=None, ge=0, le=100)
    lap: int | None = Field(default=None, ge=0)


class InterventionEvent(_Event):
    type: Literal["intervention"] = "intervention"
    reason: str
    source: str | None = Field(default=None, description="what intervened, e.g. safety_rule")


class DetectionEvent(_Event):
    """The detector's obstacle-ahead class changed (confirmed over a few ticks), with the surface."""

    type: Literal["detection"] = "detection"
    model: str
    obstacle: str
    probability: float = Field(ge=0, le=1)
    surface: str | None = None
    distance_m: float | None = Field(
        default=None, ge=0, description="range ahead, where the car measures one"
    )
    inference_ms: float | None = Field(default=None, ge=0)


class ModelSwappedEvent(_Event):
    type: Literal["model_swapped"] = "model_swapped"
    name: str
    version: str
    sha256: str
    previous: str | None = None
    load_ms: float = Field(ge=0)
    swap_ms: float = Field(ge=0, description="message arrival to first tick on the new model")
    slot: str | None = Field(default=None, description="the model slot (unset: the pilot; or detector)")


class ModelRejectedEvent(_Event):
    type: Literal["model_rejected"] = "model_rejected"
    reason: str
    slot: str | None = Field(default=None, description="the model slot (unset: the pilot; or detector)")
    code: str | None = Field(
        default=None,
        pattern=r"^[a-z_]{1,32}$",
        description="why, for machines: unsigned, bad_signature, unknown_key, wrong_target, replayed, "
        "expired, unbound, invalid, too_large, download, load, smoke_test",
    )
    name: str | None = None
    version: str | None = None
    sha256: str | None = None


class RecordingEvent(_Event):
    type: Literal["recording_started", "recording_stopped"]
    session: SessionId
    frames: int = Field(default=0, ge=0)
    reason: str | None = None


class EstopEvent(_Event):
    type: Literal["estop"] = "estop"
    active: bool
    reason: str = ""


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    message: str
    component: str = ""


class DriftEvent(_Event):
    """Raised by the hub (not the car) when a model's live inputs part from its training inputs, and
    again when they come back (``drifted`` false)."""

    type: Literal["drift"] = "drift"
    model: str
    score: float = Field(ge=0, description="population stability index, live vs training inputs")
    threshold: float = Field(gt=0)
    drifted: bool
    feature_score: float | None = Field(
        default=None, ge=0, description="the network's feature drift, live vs training (models with features)"
    )
    feature_threshold: float | None = Field(default=None, gt=0)

    def why(self) -> str:
        """What parted (or came back): the pixel PSI, and the features where they crossed their threshold."""
        text = f"PSI {self.score:.3f} {'>' if self.score > self.threshold else '<='} {self.threshold}"
        f, ft = self.feature_score, self.feature_threshold
        if f is not None and ft is not None and (f > ft) == self.drifted:
            text += f", feature drift {f:.3f} {'>' if f > ft else '<='} {ft}"
        return text


class CanaryEvent(_Event):
    """Raised by the hub for a car trying a new model before its group: ``started``, then
    ``promoted`` (the group gets the model) or ``rolled_back`` (the car goes back), with the figures."""

    type: Literal["canary"] = "canary"
    canary: str = Field(description="the canary's id")
    model: str
    group: str
    baseline: str | None = Field(default=None, description="the group's model before the canary")
    state: Literal["started", "promoted", "rolled_back"]
    reasons: list[str] = Field(default_factory=list)


Event = Annotated[
    LapEvent
    | OffTrackEvent
    | InterventionEvent
    | DetectionEvent
    | ModelSwappedEvent
    | ModelRejectedEvent
    | RecordingEvent
    | EstopEvent
    | ErrorEvent
    | DriftEvent
    | CanaryEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: bytes | str) -> Event:
    """Parse any event by its ``type``."""
    try:
        return EVENT_ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise ContractError(f"invalid event: {_summary(exc)}") from None


# --- commands ------------------------------------------------------------------------------------
class _Command(WireModel):
    transaction: str | None = Field(default=None, max_length=128, description="echoed in the response")


class DriveCommand(_Command):
    """Manual drive (QoS 0). The car zeroes throttle if none arrives within its deadman time."""

    steering: Unit
    throttle: Unit
    ts: float | None = None


class ModeCommand(_Command):
    mode: Mode


class RecordCommand(_Command):
    action: Literal["start", "stop"]
    session: SessionId | None = Field(default=None, description="chosen by the car when omitted")


class ConfigCommand(_Command):
    """Runtime settings to change, e.g. ``{"telemetry_hz": 5}``; the car validates each key."""

    values: dict[str, Any]


class RebirthCommand(_Command):
    """Ask the car to publish its birth again."""


COMMAND_MODELS: dict[str, type[_Command]] = {
    "drive": DriveCommand,
    "mode": ModeCommand,
    "record": RecordCommand,
    "config": ConfigCommand,
    "rebirth": RebirthCommand,
}


def parse_command(name: str, data: bytes | str) -> _Command:
    """Parse the payload of ``cmd/{name}``."""
    try:
        model = COMMAND_MODELS[name]
    except KeyError:
        raise ContractError(f"unknown command {name!r}") from None
    return model.from_json(data)


class CommandResponse(WireModel):
    status: Literal["ok", "error"]
    data: dict[str, Any] | None = None
    error: str | None = None
    transaction: str | None = None
    ts: Timestamp


class EStop(WireModel):
    """Retained on ``fleet/estop``; a car obeys it on (re)connect and within one tick."""

    active: bool
    reason: str = ""
    ts: Timestamp


class ModelState(WireModel):
    """Retained on ``cars/{car}/model/state``: what the car drives now."""

    active: str | None = Field(default=None, description="name:version of the running model")
    sha256: str | None = None
    loaded_ms: float | None = Field(default=None, ge=0)
    previous: str | None = None
    last_error: str | None = None
    ts: Timestamp


# --- jobs ----------------------------------------------------------------------------------------
class SessionRef(WireModel):
    car: str
    session: SessionId


class TrainParams(WireModel):
    """What to learn from and how. Either a named ``dataset`` or explicit ``sessions``."""

    dataset: Name | None = None
    sessions: list[SessionRef] = Field(default_factory=list)
    architecture: str = "mobilenet"
    epochs: int = Field(default=10, ge=1, le=10_000)
    batch_size: int = Field(default=64, ge=1, le=65_536)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    seed: int = 0
    model_name: Name = "pilot"
    model_version: Name | None = None
    workers: int = Field(default=1, ge=1, description="processes for distributed training")
    launcher: Literal["local", "torchrun", "horovod"] = "local"
    evaluate_track: str | None = None
    evaluate_laps: int = Field(default=0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)


class EvaluateParams(WireModel):
    model_name: Name
    model_version: Name
    track: str
    laps: int = Field(default=3, ge=1, le=1000)
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)


class OptimizeParams(WireModel):
    track: str
    generations: int = Field(default=20, ge=1)
    population: int = Field(default=32, ge=4)
    seed: int = 0
    budget_s: float | None = Field(
        default=None, gt=0, description="wall-clock seconds: stop after the generation that passes them"
    )
    options: dict[str, Any] = Field(default_factory=dict)


class ModelRef(WireModel):
    name: Name
    version: Name


RaceType = Literal["time_trial", "object_avoidance", "head_to_head"]
RACE_TYPES: tuple[str, ...] = get_args(RaceType)


class RlParams(WireModel):
    """An AWS DeepRacer model to train by reinforcement learning: its three files inline (the JSON of
    ``model_metadata.json`` and ``hyperparameters.json``, the Python source of ``reward_function.py``),
    the track and the budget. ``clone`` starts from a registered RL model's weights."""

    model_metadata: dict[str, Any]
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="DeepRacer's keys; missing ones default"
    )
    reward_function: str = Field(min_length=1, max_length=1_000_000)
    track: str
    minutes: float = Field(default=10.0, gt=0, le=7 * 24 * 60)
    workers: int | None = Field(default=None, ge=1, le=256)
    race_type: RaceType = "time_trial"
    model_name: Name = "deepracer"
    model_version: Name | None = None
    clone: ModelRef | None = None
    evaluate_trials: int = Field(default=3, ge=0, le=100)
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)


class _Job(WireModel):
    job: JobId
    ts: Timestamp
    requested_by: str | None = None


class TrainJob(_Job):
    kind: Literal["train"] = "train"
    params: TrainParams


class EvaluateJob(_Job):
    kind: Literal["evaluate"] = "evaluate"
    params: EvaluateParams


class OptimizeJob(_Job):
    kind: Literal["optimize"] = "optimize"
    params: OptimizeParams


class RlJob(_Job):
    kind: Literal["rl"] = "rl"
    params: RlParams


JobRequest = Annotated[TrainJob | EvaluateJob | OptimizeJob | RlJob, Field(discriminator="kind")]
JOB_ADAPTER: TypeAdapter[JobRequest] = TypeAdapter(JobRequest)


def parse_job(data: bytes | str) -> JobRequest:
    try:
        return JOB_ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise ContractError(f"invalid job request: {_summary(exc)}") from None


JobState = Literal["queued", "running", "succeeded", "failed"]


class JobProgress(WireModel):
    job: JobId
    kind: Literal["train", "evaluate", "optimize", "rl"]
    state: JobState
    ts: Timestamp
    stage: str = ""
    epoch: int | None = Field(default=None, ge=0)
    epochs: int | None = Field(default=None, ge=0)
    step: int | None = Field(default=None, ge=0)
    total_steps: int | None = Field(default=None, ge=0)
    loss: float | None = None
    val_loss: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    message: str | None = None


class JobResult(WireModel):
    job: JobId
    kind: Literal["train", "evaluate", "optimize", "rl"]
    status: Literal["succeeded", "failed"]
    ts: Timestamp
    error: str | None = None
    model: ModelRef | None = None
    artifacts: dict[str, str] = Field(default_factory=dict, description="name → object-store key or URL")
    metrics: dict[str, float] = Field(default_factory=dict)
    duration_s: float | None = Field(default=None, ge=0)
