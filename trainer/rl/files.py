"""A model as AWS DeepRacer writes it: ``model_metadata.json``, ``hyperparameters.json`` and
``reward_function.py`` in one directory.

:func:`new_model` writes the three with DeepRacer's defaults; :func:`load_model_dir` reads and checks
them. Every problem is a :class:`ModelFileError` whose message is one line naming the file and the
key (``hyperparameters.json: lr: Input should be greater than 0``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from firmware.sim.reward import RewardFunction, RewardFunctionError, load_reward_function

METADATA_FILE = "model_metadata.json"
HYPERPARAMETERS_FILE = "hyperparameters.json"
REWARD_FILE = "reward_function.py"
REGISTERED_FILE = "registered.json"  # name and version the hub gave this model directory

# DeepRacer's names, and the short names people use for them.
NETWORKS = {
    "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW": "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW",
    "SHALLOW": "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW",
    "DEEP_CONVOLUTIONAL_NETWORK": "DEEP_CONVOLUTIONAL_NETWORK",
    "DEEP_CONVOLUTIONAL_NETWORK_DEEP": "DEEP_CONVOLUTIONAL_NETWORK_DEEP",
    "DEEP": "DEEP_CONVOLUTIONAL_NETWORK_DEEP",
}
CAMERAS = ("FRONT_FACING_CAMERA", "STEREO_CAMERAS")
LIDARS = ("LIDAR", "SECTOR_LIDAR", "DISCRETIZED_SECTOR_LIDAR")
MAX_STEERING_DEG = 30.0
MIN_SPEED, MAX_SPEED = 0.1, 4.0


class ModelFileError(ValueError):
    """A model file that is missing, unreadable or wrong; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiscreteAction(_Strict):
    """One action of a discrete space: DeepRacer's degrees (positive = left) and m/s."""

    steering_angle: float = Field(ge=-MAX_STEERING_DEG, le=MAX_STEERING_DEG, allow_inf_nan=False)
    speed: float = Field(ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False)
    index: int | None = None  # DeepRacer's console writes it; ignored


class Range(_Strict):
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


class ContinuousSpace(_Strict):
    steering_angle: Range
    speed: Range

    @model_validator(mode="after")
    def _within_limits(self) -> ContinuousSpace:
        s, v = self.steering_angle, self.speed
        if s.low < -MAX_STEERING_DEG or s.high > MAX_STEERING_DEG:
            raise ValueError(f"steering_angle must lie within ±{MAX_STEERING_DEG:g} degrees")
        if v.low < MIN_SPEED or v.high > MAX_SPEED:
            raise ValueError(f"speed must lie within {MIN_SPEED:g}–{MAX_SPEED:g} m/s")
        return self


class ModelMetadata(_Strict):
    """``model_metadata.json``: the action space, the sensors, the network and the algorithm."""

    action_space_type: Literal["discrete", "continuous"] = "discrete"
    action_space: list[DiscreteAction] | ContinuousSpace
    sensor: list[str] = Field(default_factory=lambda: ["FRONT_FACING_CAMERA"], min_length=1)
    neural_network: str = "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW"
    training_algorithm: Literal["clipped_ppo", "sac"] = "clipped_ppo"
    version: str = "5"
    preprocess_type: str | None = None  # written by DeepRacer's console; only grayscale is used

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("action_space_type", "training_algorithm"):
                if isinstance(data.get(key), str):
                    data[key] = data[key].strip().lower()
            if isinstance(data.get("neural_network"), str):
                data["neural_network"] = data["neural_network"].strip().upper()
            if isinstance(data.get("version"), int | float):
                data["version"] = str(data["version"])
        return data

    @model_validator(mode="after")
    def _coherent(self) -> ModelMetadata:
        discrete = isinstance(self.action_space, list)
        if discrete != (self.action_space_type == "discrete"):
            want = "a list of actions" if self.action_space_type == "discrete" else "low/high ranges"
            raise ValueError(f"action_space: a {self.action_space_type} space needs {want}")
        if discrete and not self.action_space:
            raise ValueError("action_space: a discrete space needs at least one action")
        if self.training_algorithm == "sac" and discrete:
            raise ValueError("training_algorithm: sac needs a continuous action_space (as DeepRacer)")
        if self.neural_network not in NETWORKS:
            raise ValueError(f"neural_network: {self.neural_network!r} is not one of {sorted(set(NETWORKS))}")
        object.__setattr__(self, "neural_network", NETWORKS[self.neural_network])
        for s in self.sensor:
            if s not in CAMERAS + LIDARS:
                raise ValueError(f"sensor: {s!r} is not one of {list(CAMERAS + LIDARS)}")
        if not any(s in CAMERAS for s in self.sensor):
            raise ValueError("sensor: a camera (FRONT_FACING_CAMERA) is needed")
        return self

    @property
    def discrete_actions(self) -> list[DiscreteAction]:
        return self.action_space if isinstance(self.action_space, list) else []

    @property
    def uses_lidar(self) -> bool:
        return any(s in LIDARS for s in self.sensor)

    def for_env(self) -> dict[str, Any]:
        """The dict :class:`firmware.sim.gym_env.DeepRacerEnv` takes."""
        return self.model_dump(mode="json", exclude_none=True)


class Hyperparameters(_Strict):
    """``hyperparameters.json`` with DeepRacer's keys and defaults (see docs/rl.md for how each maps
    onto stable-baselines3)."""

    batch_size: int = Field(default=64, ge=2, le=4096, description="gradient descent batch size")
    beta_entropy: float = Field(default=0.01, ge=0, le=1, description="entropy bonus (PPO)")
    discount_factor: float = Field(default=0.999, ge=0, le=1, description="gamma")
    e_greedy_value: float = Field(default=0.05, ge=0, le=1, description="epsilon (exploration_type e-greedy)")
    epsilon_steps: int = Field(default=10000, ge=0, description="steps epsilon decays over")
    exploration_type: Literal["categorical", "e-greedy", "additive_noise"] = "categorical"
    loss_type: Literal["huber", "mean squared error", "mean_squared_error"] = "huber"
    lr: float = Field(default=0.0003, gt=0, le=1, description="learning rate")
    num_episodes_between_training: int = Field(
        default=20, ge=1, le=1000, description="episodes per iteration"
    )
    num_epochs: int = Field(default=10, ge=1, le=100, description="passes over each iteration's experience")
    stack_size: int = Field(default=1, ge=1, le=8, description="camera frames stacked per observation")
    term_cond_avg_score: float = Field(default=350.0, description="stop at this mean episode reward")
    term_cond_max_episodes: int = Field(default=1000, ge=1, description="stop after this many episodes")
    sac_alpha: float = Field(default=0.2, gt=0, le=10, description="SAC's entropy temperature")

    @model_validator(mode="before")
    @classmethod
    def _lower(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("exploration_type"), str):
            data = {**data, "exploration_type": data["exploration_type"].strip().lower()}
        if isinstance(data, dict) and isinstance(data.get("loss_type"), str):
            data = {**data, "loss_type": data["loss_type"].strip().lower()}
        return data


DEFAULT_ACTIONS = [
    {"steering_angle": float(angle), "speed": speed, "index": i * 2 + k}
    for i, angle in enumerate((-30, -15, 0, 15, 30))
    for k, speed in enumerate((0.5, 1.0))
]
DEFAULT_CONTINUOUS = {"steering_angle": {"low": -30.0, "high": 30.0}, "speed": {"low": 0.5, "high": 1.0}}

DEFAULT_REWARD_SOURCE = '''def reward_function(params):
    """Example 1 of AWS DeepRacer: follow the centre line."""
    track_width = params["track_width"]
    distance_from_center = params["distance_from_center"]

    # Three bands at increasing distance from the centre line.
    marker_1 = 0.1 * track_width
    marker_2 = 0.25 * track_width
    marker_3 = 0.5 * track_width

    if distance_from_center <= marker_1:
        reward = 1.0
    elif distance_from_center <= marker_2:
        reward = 0.5
    elif distance_from_center <= marker_3:
        reward = 0.1
    else:
        reward = 1e-3  # likely crashed or close to off track

    return float(reward)
'''


def default_metadata(action_space_type: str = "discrete") -> dict[str, Any]:
    continuous = action_space_type == "continuous"
    return {
        "action_space_type": "continuous" if continuous else "discrete",
        "action_space": DEFAULT_CONTINUOUS if continuous else DEFAULT_ACTIONS,
        "sensor": ["FRONT_FACING_CAMERA"],
        "neural_network": "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW",
        "training_algorithm": "sac" if continuous else "clipped_ppo",
        "version": "5",
    }


def new_model(directory: Path, action_space_type: str = "discrete", force: bool = False) -> list[Path]:
    """Write the three files with DeepRacer's defaults; refuses to overwrite unless ``force``."""
    directory.mkdir(parents=True, exist_ok=True)
    contents = {
        METADATA_FILE: json.dumps(default_metadata(action_space_type), indent=4) + "\n",
        HYPERPARAMETERS_FILE: json.dumps(Hyperparameters().model_dump(), indent=4) + "\n",
        REWARD_FILE: DEFAULT_REWARD_SOURCE,
    }
    existing = [name for name in contents if (directory / name).exists()]
    if existing and not force:
        raise ModelFileError(f"{directory / existing[0]}: already exists (use --force to overwrite)")
    written = []
    for name, text in contents.items():
        (directory / name).write_text(text)
        written.append(directory / name)
    return written


@dataclass(frozen=True)
class ModelFiles:
    """The three files of one model directory, read and checked."""

    directory: Path
    metadata: ModelMetadata
    hyperparameters: Hyperparameters
    reward_path: Path

    def reward_function(self) -> RewardFunction:
        return load_reward_function(self.reward_path)


def load_json_model(path: Path, model: type[BaseModel], overrides: dict[str, Any] | None = None) -> Any:
    """Read ``path`` as ``model``; any problem is one :class:`ModelFileError` line naming the key."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: must hold a JSON object")
    data.update(overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ModelFileError(f"{path}: {_first_error(exc, data)}") from None


_BRANCHES = {"list[DiscreteAction]": list, "ContinuousSpace": dict}


def _first_error(exc: ValidationError, data: dict[str, Any]) -> str:
    """``key.path: message`` of the most telling error; of a union (``action_space``), an error of
    the branch that the file's value has the shape of."""
    errors = exc.errors()
    shape = type(data.get("action_space"))
    fitting = [e for e in errors if any(_BRANCHES.get(str(p)) is shape for p in e["loc"])]
    err = (fitting or errors)[0]
    parts = [p for p in err["loc"] if str(p) not in _BRANCHES]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    if not loc:  # a model-level check: its message starts with the key
        return msg
    return f"{loc}: {msg}"


def load_model_dir(directory: Path, overrides: dict[str, Any] | None = None) -> ModelFiles:
    """Read and check the three files; ``overrides`` replace hyperparameters (``--set key=value``)."""
    if not directory.is_dir():
        raise ModelFileError(f"{directory}: no such model directory (create one with `paddock rl new`)")
    metadata = load_json_model(directory / METADATA_FILE, ModelMetadata)
    hyper = load_json_model(directory / HYPERPARAMETERS_FILE, Hyperparameters, overrides)
    reward_path = directory / REWARD_FILE
    try:
        load_reward_function(reward_path)
    except RewardFunctionError as exc:
        raise ModelFileError(str(exc)) from None
    return ModelFiles(directory, metadata, hyper, reward_path)


def resolve_track(name: str) -> str:
    """A track argument as the simulator takes it: a built-in name, a ``.npy`` path, or the name of a
    DeepRacer track file in ``$PADDOCK_TRACKS_DIR`` (``reinvent_base`` → ``…/reinvent_base.npy``).
    Raises :class:`firmware.sim.track.TrackError` when none exists."""
    from firmware.sim.tracks import get_track

    candidate = Path(os.environ.get("PADDOCK_TRACKS_DIR", ".")) / f"{name}.npy"
    if Path(name).suffix != ".npy" and not Path(name).exists() and candidate.is_file():
        name = str(candidate)
    get_track(name)
    return name


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["lr=0.001", "exploration_type=categorical"]`` → typed values (JSON where it parses)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ModelFileError(f"--set {pair!r}: expected key=value")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, float) and not math.isfinite(value):
            raise ModelFileError(f"--set {key}: must be finite")
        out[key.strip()] = value
    return out


def parent_ref(model_dir: Path | None) -> str | None:
    """``name:version`` of a model directory that was registered (or fetched from the hub)."""
    if model_dir is None:
        return None
    try:
        data = json.loads((model_dir / REGISTERED_FILE).read_text())
        return f"{data['name']}:{data['version']}"
    except (OSError, ValueError, KeyError):
        return None
