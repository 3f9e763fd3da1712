"""Storage layout and the manifests that describe recorded data (docs/wire.md "Storage layout").

Object-store keys::

    datasets/{car}/{session}/shard-{n:06d}.tar     WebDataset: {seq:09d}.jpg + {seq:09d}.json
    datasets/{car}/{session}/manifest.json         SessionManifest
    datasets/_sets/{name}/manifest.json            DatasetManifest (a named set of sessions)
    models/{name}/{version}/                       model files, card, training report
    evals/{id}/                                    report, simtrace CSV, video

Every key is built here from validated ids, so no id can reach outside the store.
"""

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import WireModel, now
from schemas.ids import CarId, Name, SessionId, check_car_id, check_name
from schemas.messages import SessionRef


def session_prefix(car: str, session: str) -> str:
    return f"datasets/{check_car_id(car)}/{check_name(session, 'session id')}/"


def shard_name(index: int) -> str:
    if index < 0:
        raise ValueError("shard index must be >= 0")
    return f"shard-{index:06d}.tar"


def shard_key(car: str, session: str, index: int) -> str:
    return session_prefix(car, session) + shard_name(index)


def session_manifest_key(car: str, session: str) -> str:
    return session_prefix(car, session) + "manifest.json"


def sample_key(seq: int) -> str:
    """WebDataset sample key of a frame: its seq, zero-padded so lexical order is seq order."""
    return f"{seq:09d}"


def dataset_manifest_key(name: str) -> str:
    """Key of a named dataset's manifest. ``_sets`` cannot be a car id, so it never meets a car's folder."""
    return f"datasets/_sets/{check_name(name, 'dataset name')}/manifest.json"


def model_prefix(name: str, version: str) -> str:
    return f"models/{check_name(name, 'model name')}/{check_name(version, 'model version')}/"


def eval_prefix(eval_id: str) -> str:
    return f"evals/{check_name(eval_id, 'evaluation id')}/"


class ShardInfo(WireModel):
    name: str = Field(pattern=r"^shard-\d{6}\.tar$")
    frames: int = Field(ge=0)
    bytes: int = Field(ge=0)
    seq_first: int = Field(ge=0)
    seq_last: int = Field(ge=0)
    sha256: str | None = None


class SessionStats(WireModel):
    steering_mean: float | None = None
    steering_std: float | None = None
    throttle_mean: float | None = None
    throttle_std: float | None = None
    speed_mean: float | None = None
    duration_s: float | None = Field(default=None, ge=0)
    width: int | None = None
    height: int | None = None


class SessionManifest(WireModel):
    """What one recording session holds. ``gaps`` lists missing seq ranges, inclusive."""

    car: CarId
    session: SessionId
    frame_count: int = Field(default=0, ge=0)
    seq_first: int | None = Field(default=None, ge=0)
    seq_last: int | None = Field(default=None, ge=0)
    gaps: list[tuple[int, int]] = Field(default_factory=list)
    shards: list[ShardInfo] = Field(default_factory=list)
    stats: SessionStats = Field(default_factory=SessionStats)
    state: Literal["recording", "sealed"] = "recording"
    created: float = Field(default_factory=now)
    updated: float = Field(default_factory=now)

    @property
    def missing(self) -> int:
        return sum(b - a + 1 for a, b in self.gaps)

    @model_validator(mode="after")
    def _check(self) -> "SessionManifest":
        for a, b in self.gaps:
            if a > b or a < 0:
                raise ValueError(f"bad gap ({a}, {b})")
        return self


class DatasetManifest(WireModel):
    """A named set of sessions, split into train and validation by session (never by frame)."""

    name: Name
    train: list[SessionRef] = Field(default_factory=list)
    val: list[SessionRef] = Field(default_factory=list)
    created: float = Field(default_factory=now)
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> "DatasetManifest":
        train = {(r.car, r.session) for r in self.train}
        overlap = train & {(r.car, r.session) for r in self.val}
        if overlap:
            raise ValueError(f"sessions in both train and val: {sorted(overlap)}")
        return self
