"""The MQTT topic tree (one builder, one parser).

Every topic is ``{prefix}/v1/...``; the prefix defaults to ``paddock`` and may itself contain '/'
(for several fleets on one broker). Build topics with :class:`Topics`; turn a received topic back
into its parts with :meth:`Topics.parse`, which rejects anything outside the tree.
"""

import re
from dataclasses import dataclass
from enum import StrEnum

from schemas.errors import ContractError
from schemas.ids import check_car_id, check_group_id, check_name

DEFAULT_PREFIX = "paddock"
VERSION = "v1"

# Commands a car accepts on cmd/{name}.
COMMAND_NAMES = ("drive", "mode", "record", "config", "rebirth")
# Job kinds a trainer accepts on jobs/{kind}.
JOB_KINDS = ("train", "evaluate", "optimize", "rl")
# What a car publishes under cars/{car}/ besides its command responses (the hub ingests all of it).
CAR_LEAVES = ("status", "telemetry", "frames", "events", "model/state", "detector/state")

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


class TopicKind(StrEnum):
    HUB_STATUS = "hub_status"
    CAR_STATUS = "car_status"
    TELEMETRY = "telemetry"
    FRAMES = "frames"
    EVENTS = "events"
    COMMAND = "command"
    COMMAND_RESPONSE = "command_response"
    FLEET_ESTOP = "fleet_estop"
    CAR_MODEL = "car_model"
    GROUP_MODEL = "group_model"
    MODEL_STATE = "model_state"
    CAR_DETECTOR = "car_detector"
    GROUP_DETECTOR = "group_detector"
    DETECTOR_STATE = "detector_state"
    JOB_REQUEST = "job_request"
    JOB_PROGRESS = "job_progress"
    JOB_RESULT = "job_result"


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """A topic taken apart. Fields that do not apply to ``kind`` are ``None``."""

    kind: TopicKind
    car: str | None = None
    group: str | None = None
    command: str | None = None
    job_kind: str | None = None
    job: str | None = None
    trainer: str | None = None


def _check_command(name: str) -> str:
    if name not in COMMAND_NAMES:
        raise ContractError(f"unknown command {name!r}; expected one of {', '.join(COMMAND_NAMES)}")
    return name


def _check_job_kind(kind: str) -> str:
    if kind not in JOB_KINDS:
        raise ContractError(f"unknown job kind {kind!r}; expected one of {', '.join(JOB_KINDS)}")
    return kind


class Topics:
    """Topic builder and parser for one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not _PREFIX_RE.fullmatch(prefix):
            raise ContractError(
                f"invalid topic prefix {prefix!r}: use letters, digits, '-', '_' separated by '/'"
            )
        self.prefix = prefix
        self.root = f"{prefix}/{VERSION}"
        self._root_parts = self.root.split("/")

    # --- builders -------------------------------------------------------------------------------
    def hub_status(self) -> str:
        return f"{self.root}/hub/status"

    def car_status(self, car: str) -> str:
        return f"{self.root}/cars/{check_car_id(car)}/status"

    def telemetry(self, car: str) -> str:
        return f"{self.root}/cars/{check_car_id(car)}/telemetry"

    def frames(self, car: str) -> str:
        return f"{self.root}/cars/{check_car_id(car)}/frames"

    def events(self, car: str) -> str:
        return f"{self.root}/cars/{check_car_id(car)}/events"

    def command(self, car: str, name: str) -> str:
        return f"{self.root}/cars/{check_car_id(car)}/cmd/{_check_command(name)}"

    def command_response(self, car: str, name: str) -> str:
        return f"{self.command(car, name)}/response"

    def fleet_estop(self) -> str:
        return f"{self.root}/fleet/estop"

    def car_model(self, car: str) -> str:
        return f"{self.root}/cars/{check_car_id(car)}/model"

    def group_model(self, group: str) -> str:
        return f"{self.root}/groups/{check_group_id(group)}/model"

    def model_state(self, car: str) -> str:
        return f"{self.root}/cars/{check_car_id(car)}/model/state"

    # The detector: a second model slot beside the pilot, with its own retained topics.
    def car_detector(self, car: str) -> str:
        return f"{self.root}/cars/{check_car_id(car)}/detector"

    def group_detector(self, group: str) -> str:
        return f"{self.root}/groups/{check_group_id(group)}/detector"

    def detector_state(self, car: str) -> str:
        return f"{self.root}/cars/{check_car_id(car)}/detector/state"

    def job_request(self, kind: str) -> str:
        return f"{self.root}/jobs/{_check_job_kind(kind)}"

    def job_progress(self, kind: str, job: str, trainer: str | None = None) -> str:
        """A job's progress; with ``trainer`` (the trainer's broker identity) on its own topic,
        which the broker lets only that trainer publish on (docs/security.md)."""
        return self._job_update(kind, job, "progress", trainer)

    def job_result(self, kind: str, job: str, trainer: str | None = None) -> str:
        return self._job_update(kind, job, "result", trainer)

    def _job_update(self, kind: str, job: str, leaf: str, trainer: str | None) -> str:
        topic = f"{self.root}/jobs/{_check_job_kind(kind)}/{check_name(job, 'job id')}/{leaf}"
        return f"{topic}/{check_car_id(trainer)}" if trainer else topic

    # --- subscription filters -------------------------------------------------------------------
    def all_cars(self, leaf: str) -> str:
        """Filter for one leaf of every car, e.g. ``all_cars("frames")`` → ``paddock/v1/cars/+/frames``."""
        if leaf not in CAR_LEAVES:
            raise ContractError(f"no per-car leaf {leaf!r}")
        return f"{self.root}/cars/+/{leaf}"

    def all_commands(self, car: str) -> str:
        return f"{self.root}/cars/{check_car_id(car)}/cmd/+"

    def all_command_responses(self) -> str:
        return f"{self.root}/cars/+/cmd/+/response"

    def all_job_updates(self, kind: str = "+") -> str:
        """Filter for progress and results of every job (of one kind, or all with '+')."""
        if kind != "+":
            _check_job_kind(kind)
        return f"{self.root}/jobs/{kind}/+/#"

    # --- parser ---------------------------------------------------------------------------------
    def parse(self, topic: str) -> ParsedTopic:
        """Take a concrete topic apart; raise :class:`ContractError` for anything outside the tree."""
        parts = topic.split("/")
        n = len(self._root_parts)
        if parts[:n] != self._root_parts:
            raise ContractError(f"topic {topic!r} is not under {self.root!r}")
        rest = parts[n:]
        try:
            return self._parse_rest(rest)
        except ContractError as exc:
            raise ContractError(f"topic {topic!r}: {exc}") from None

    def _parse_rest(self, rest: list[str]) -> ParsedTopic:
        match rest:
            case ["hub", "status"]:
                return ParsedTopic(TopicKind.HUB_STATUS)
            case ["fleet", "estop"]:
                return ParsedTopic(TopicKind.FLEET_ESTOP)
            case ["groups", group, "model"]:
                return ParsedTopic(TopicKind.GROUP_MODEL, group=check_group_id(group))
            case ["groups", group, "detector"]:
                return ParsedTopic(TopicKind.GROUP_DETECTOR, group=check_group_id(group))
            case ["cars", car, "detector"]:
                return ParsedTopic(TopicKind.CAR_DETECTOR, car=check_car_id(car))
            case ["cars", car, "detector", "state"]:
                return ParsedTopic(TopicKind.DETECTOR_STATE, car=check_car_id(car))
            case ["cars", car, "status"]:
                return ParsedTopic(TopicKind.CAR_STATUS, car=check_car_id(car))
            case ["cars", car, "telemetry"]:
                return ParsedTopic(TopicKind.TELEMETRY, car=check_car_id(car))
            case ["cars", car, "frames"]:
                return ParsedTopic(TopicKind.FRAMES, car=check_car_id(car))
            case ["cars", car, "events"]:
                return ParsedTopic(TopicKind.EVENTS, car=check_car_id(car))
            case ["cars", car, "model"]:
                return ParsedTopic(TopicKind.CAR_MODEL, car=check_car_id(car))
            case ["cars", car, "model", "state"]:
                return ParsedTopic(TopicKind.MODEL_STATE, car=check_car_id(car))
            case ["cars", car, "cmd", name]:
                return ParsedTopic(TopicKind.COMMAND, car=check_car_id(car), command=_check_command(name))
            case ["cars", car, "cmd", name, "response"]:
                return ParsedTopic(
                    TopicKind.COMMAND_RESPONSE, car=check_car_id(car), command=_check_command(name)
                )
            case ["jobs", kind]:
                return ParsedTopic(TopicKind.JOB_REQUEST, job_kind=_check_job_kind(kind))
            case ["jobs", kind, job, "progress" | "result" as leaf, *by] if len(by) <= 1:
                return ParsedTopic(
                    TopicKind.JOB_PROGRESS if leaf == "progress" else TopicKind.JOB_RESULT,
                    job_kind=_check_job_kind(kind),
                    job=check_name(job, "job id"),
                    trainer=check_car_id(by[0]) if by else None,
                )
        raise ContractError("not a paddock topic")
