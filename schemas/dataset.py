"""Storage layout and the manifests that describe recorded data (docs/wire.md "Storage layout").

Object-store keys::

    datasets/{car}/{session}/shard-{n:06d}.tar     WebDataset: {seq:09d}.jpg + {seq:09d}.json
    datasets/{car}/{session}/manifest.json         SessionManifest
    datasets/{car}/{session}/lidar.csv             one row per lidar scan (where the car has a lidar)
    datasets/{car}/{session}/lidar-{n:06d}.csv     the rows of shard n (the hub's, merged into lidar.csv)
    datasets/_sets/{name}/manifest.json            DatasetManifest (a named set of sessions)
    models/{name}/{version}/                       model files, card, training report
    evals/{id}/                                    report, simtrace CSV, video

Every key is built here from validated ids, so no id can reach outside the store.
"""

from typing import Any, Literal

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


LIDAR_FILE = "lidar.csv"
LIDAR_POSE = ("x", "y", "yaw")


def lidar_key(car: str, session: str) -> str:
    """The session's lidar scans: ``seq, t_s, x, y, yaw`` then one column per beam (metres)."""
    return session_prefix(car, session) + LIDAR_FILE


def lidar_part_key(car: str, session: str, index: int) -> str:
    """The lidar rows of shard ``index`` (the hub writes one per shard and merges them on close)."""
    if index < 0:
        raise ValueError("shard index must be >= 0")
    return session_prefix(car, session) + f"lidar-{index:06d}.csv"


def lidar_columns(beams: int) -> list[str]:
    return ["seq", "t_s", *LIDAR_POSE, *(f"r{i:03d}" for i in range(beams))]


def lidar_row(record: dict[str, Any]) -> list[str] | None:
    """The ``lidar.csv`` row of a frame record (a dict as stored), or None if it has no scan. The
    pose is the record's ``x, y, yaw`` where it has one (a simulated car), else left empty."""
    scan = record.get("lidar")
    if not isinstance(scan, dict) or not isinstance(scan.get("ranges"), list):
        return None
    pose = [f"{v:.5f}" if isinstance(v := record.get(k), int | float) else "" for k in LIDAR_POSE]
    t_s = f"{scan.get('t_capture_ns', 0) / 1e9:.4f}"
    return [str(record["seq"]), t_s, *pose, *(f"{float(r):.3f}" for r in scan["ranges"])]


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
