"""Model manifest and card: what a model expects and produces, so the car preprocesses exactly as
the trainer did.

A model is exported with one named output tensor per :class:`OutputSpec`:

* ``linear`` outputs have shape ``[batch, 1]`` (or ``[batch]``) and are clipped to ``range``;
* ``categorical`` outputs have shape ``[batch, len(bins)]`` (logits); the value is the centre of the
  most likely bin.

:func:`preprocess` is the single implementation of the card's input pipeline, used by both the
car's runtimes and the trainer's datasets.
"""

import hashlib
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from schemas.base import WireModel, now
from schemas.errors import ContractError
from schemas.ids import Name
from schemas.input_stats import MAX_FEATURES, InputStats

Colour = Literal["rgb", "bgr", "gray"]


class Crop(WireModel):
    """Pixels removed from each edge of the camera image before resizing."""

    top: int = Field(default=0, ge=0)
    bottom: int = Field(default=0, ge=0)
    left: int = Field(default=0, ge=0)
    right: int = Field(default=0, ge=0)


class Normalisation(WireModel):
    """``x = (pixel * scale - mean) / std``, per channel."""

    scale: float = Field(default=1.0 / 255.0, gt=0)
    mean: list[float] = Field(default_factory=lambda: [0.0])
    std: list[float] = Field(default_factory=lambda: [1.0])

    @model_validator(mode="after")
    def _check(self) -> "Normalisation":
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std must have the same length")
        if any(s <= 0 for s in self.std):
            raise ValueError("std must be positive")
        return self


class InputSpec(WireModel):
    """The image tensor the model takes: ``[batch, channels, height, width]`` float32 for ``nchw``."""

    name: str = "image"
    width: int = Field(gt=0, le=4096)
    height: int = Field(gt=0, le=4096)
    colour: Colour = "rgb"
    crop: Crop = Field(default_factory=Crop)
    normalisation: Normalisation = Field(default_factory=Normalisation)
    layout: Literal["nchw", "nhwc"] = "nchw"
    frames: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="consecutive camera frames the model takes, stacked on the channel axis, "
        "oldest first (DeepRacer's stack_size); absent: one",
    )

    @property
    def channels(self) -> int:
        """Channels of one frame."""
        return 1 if self.colour == "gray" else 3

    @property
    def frame_count(self) -> int:
        return self.frames or 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one preprocessed sample (without the batch axis), all its frames stacked."""
        channels = self.channels * self.frame_count
        if self.layout == "nchw":
            return (channels, self.height, self.width)
        return (self.height, self.width, channels)


class OutputSpec(WireModel):
    name: Literal["steering", "throttle"]
    kind: Literal["linear", "categorical"] = "linear"
    tensor: str = Field(default="", description="output tensor name; defaults to `name`")
    range: tuple[float, float] = (-1.0, 1.0)
    bins: list[float] = Field(default_factory=list, description="bin centres for categorical outputs")

    @model_validator(mode="after")
    def _check(self) -> "OutputSpec":
        if not self.tensor:
            self.tensor = self.name
        lo, hi = self.range
        if lo >= hi:
            raise ValueError(f"range {self.range} is empty")
        if self.kind == "categorical" and len(self.bins) < 2:
            raise ValueError("a categorical output needs at least two bins")
        if self.kind == "linear" and self.bins:
            raise ValueError("a linear output has no bins")
        return self


class ClassesSpec(WireModel):
    """One classification head of a ``classifier`` model: a tensor ``[batch, len(classes)]`` of
    probabilities (``softmax`` false: the model already applies it) or logits (``softmax`` true)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="the task, e.g. obstacle, surface")
    tensor: str = Field(default="", description="output tensor name; defaults to `name`")
    classes: list[str] = Field(min_length=2, description="class names in the tensor's order")
    softmax: bool = Field(default=False, description="true: the tensor holds logits")

    @model_validator(mode="after")
    def _check(self) -> "ClassesSpec":
        if not self.tensor:
            self.tensor = self.name
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"duplicate classes {self.classes}")
        return self


class DiscreteAction(WireModel):
    """One action of a discrete (DeepRacer) action space, in DeepRacer's units and the car's."""

    steering_angle: float = Field(description="degrees, positive = LEFT (DeepRacer)")
    speed: float = Field(ge=0, description="m/s")
    steering: float = Field(ge=-1, le=1, description="the car's steering command, +1 = right")
    throttle: float = Field(ge=-1, le=1, description="the car's throttle command")


class ActionSpace(WireModel):
    """The action space of a reinforcement-learning policy (an AWS DeepRacer model).

    ``tensor`` holds the policy's raw output: for ``discrete``, one logit per entry of ``actions``
    (the car takes the argmax); for ``continuous``, the mean ``[steering_angle, speed]`` in
    DeepRacer's units, mapped linearly onto the car's commands: ``steering_angle`` from its low to its
    high gives ``steering`` from its first to its second value, and likewise ``speed`` → ``throttle``.
    The exported model also computes the ``steering`` and ``throttle`` outputs itself, so a car
    that reads only :attr:`ModelCard.outputs` drives it the same way.
    """

    type: Literal["discrete", "continuous"]
    tensor: str = "action"
    actions: list[DiscreteAction] = Field(default_factory=list)
    steering_angle: tuple[float, float] | None = Field(default=None, description="continuous range, degrees")
    speed: tuple[float, float] | None = Field(default=None, description="continuous range, m/s")
    steering: tuple[float, float] | None = Field(default=None, description="car steering at the range's ends")
    throttle: tuple[float, float] | None = Field(default=None, description="car throttle at the range's ends")

    @model_validator(mode="after")
    def _check(self) -> "ActionSpace":
        if self.type == "discrete" and not self.actions:
            raise ValueError("a discrete action space needs at least one action")
        if self.type == "continuous":
            ranges = (self.steering_angle, self.speed, self.steering, self.throttle)
            if any(r is None for r in ranges):
                raise ValueError(
                    "a continuous action space needs steering_angle, speed, steering and throttle"
                )
            if self.actions:
                raise ValueError("a continuous action space has no list of actions")
        return self

    def command(self, raw: NDArray[np.float32]) -> dict[str, float]:
        """The car's ``{"steering", "throttle"}`` for the policy's raw output of one sample."""
        arr = np.asarray(raw, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(arr)):
            raise ContractError(f"output {self.tensor!r} is not finite")
        if self.type == "discrete":
            if arr.size != len(self.actions):
                raise ContractError(
                    f"output {self.tensor!r} has {arr.size} values, expected {len(self.actions)}"
                )
            chosen = self.actions[int(np.argmax(arr))]
            return {"steering": chosen.steering, "throttle": chosen.throttle}
        if arr.size != 2:
            raise ContractError(f"output {self.tensor!r} has {arr.size} values, expected 2")
        assert self.steering_angle and self.speed and self.steering and self.throttle
        return {
            "steering": _interpolate(float(arr[0]), self.steering_angle, self.steering),
            "throttle": _interpolate(float(arr[1]), self.speed, self.throttle),
        }


def _interpolate(x: float, source: tuple[float, float], target: tuple[float, float]) -> float:
    lo, hi = source
    t = 0.0 if hi == lo else min(max((x - lo) / (hi - lo), 0.0), 1.0)
    return float(target[0] + t * (target[1] - target[0]))


class FeaturesSpec(WireModel):
    """A second output of the model for the drift monitor: a vector of ``size`` feature values per
    sample (the trainer's: a fixed random projection of the penultimate layer). The car summarises
    it into its input statistics (:class:`schemas.input_stats.FeatureStats`); nothing drives from it."""

    tensor: str = Field(default="features", min_length=1, description="the output tensor's name")
    size: int = Field(ge=1, le=MAX_FEATURES, description="values per sample")
    source: str = Field(default="", description="how the model computes them (for people)")


ModelKind = Literal["pilot", "classifier"]


class ModelCard(WireModel):
    """What the model is, what it takes and what it gives.

    ``kind`` says which of the car's model slots it fills: a ``pilot`` drives (``outputs``:
    steering, throttle); a ``classifier`` (the detector) classifies each frame (``classes``: one
    head per task) and drives nothing. A car refuses a model offered to the wrong slot. Both
    fields are left out of a pilot's card (unset means pilot), so the signed bytes of pilots
    stay what they were.
    """

    architecture: str
    kind: ModelKind | None = Field(default=None, description="pilot (unset) or classifier")
    input: InputSpec
    outputs: list[OutputSpec] = Field(default_factory=list)
    classes: list[ClassesSpec] | None = Field(default=None, description="a classifier's heads")
    description: str = ""
    training: dict[str, Any] = Field(default_factory=dict, description="dataset, run, metrics")
    action_space: ActionSpace | None = Field(
        default=None, description="for a reinforcement-learning policy: its (DeepRacer) action space"
    )
    input_stats: InputStats | None = Field(
        default=None, description="statistics of the training images (the hub's reference for drift)"
    )
    features: FeaturesSpec | None = Field(
        default=None, description="the feature output the car summarises for drift (absent: none)"
    )

    @model_validator(mode="after")
    def _check(self) -> "ModelCard":
        names = [o.name for o in self.outputs] + [c.name for c in self.classes or []]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate outputs {names}")
        if self.features is not None and self.features.tensor in self.output_tensors:
            raise ValueError(f"the feature tensor {self.features.tensor!r} is also an output")
        stats = self.input_stats.features if self.input_stats is not None else None
        if stats is not None and (self.features is None or len(stats.mean) != self.features.size):
            raise ValueError("input_stats.features needs a features output of the same size")
        if self.slot_kind == "pilot" and (not self.outputs or self.classes):
            raise ValueError("a pilot's card needs at least one output (steering, throttle) and no classes")
        if self.slot_kind == "classifier" and (not self.classes or self.outputs):
            raise ValueError("a classifier's card needs at least one head in classes and no outputs")
        n = len(self.input.normalisation.mean)
        if n not in (1, self.input.channels):
            raise ValueError(f"normalisation has {n} channels, the input has {self.input.channels}")
        return self

    @property
    def slot_kind(self) -> ModelKind:
        return self.kind or "pilot"

    @property
    def output_tensors(self) -> list[str]:
        """Every output tensor the car reads: the pilot's outputs, then the classifier's heads."""
        return [o.tensor for o in self.outputs] + [c.tensor for c in self.classes or []]

    def output(self, name: str) -> OutputSpec | None:
        return next((o for o in self.outputs if o.name == name), None)


class ModelTarget(WireModel):
    """Who a signed manifest is for: one car, or every car of a group."""

    kind: Literal["car", "group"]
    id: Name


class ModelManifest(WireModel):
    """What a model envelope carries about its model.

    A signed envelope's header is a :class:`schemas.signing.SignedHeader` whose ``manifest`` holds
    these fields as exact bytes; ``target``, ``sequence``, ``expires`` and ``key_id`` are then
    required, so a car refuses an envelope meant for another car, replayed, stale or signed by a
    key it does not trust. Unknown fields are ignored: a newer hub may add some.
    """

    name: Name
    version: Name
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    format: Literal["onnx", "tflite"]
    card: ModelCard
    created: float = Field(default_factory=now, ge=0)
    url: str | None = Field(default=None, description="where to download the bytes when not inline")
    target: ModelTarget | None = Field(default=None, description="the car or group this is signed for")
    sequence: int | None = Field(
        default=None,
        ge=1,
        le=2**53 - 1,
        description="per target, higher for every envelope the hub signs; a car refuses one not above "
        "the last it accepted",
    )
    expires: float | None = Field(default=None, ge=0, description="unix time after which cars refuse it")
    action: Literal["deploy", "rollback", "refresh"] | None = Field(
        default=None, description="why the hub signed it (a rollback is a new, higher sequence)"
    )
    key_id: str | None = Field(default=None, description="the signing key's id (schemas.signing.key_id)")

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def preprocess(image: NDArray[np.uint8], spec: InputSpec) -> NDArray[np.float32]:
    """Turn one camera image (``H×W×3`` RGB uint8, or ``H×W`` gray) into the model's input sample.

    Steps, in order: crop, colour conversion, resize (area interpolation), normalisation, layout.
    Returns one sample without the batch axis.
    """
    import cv2

    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ContractError(f"expected an H×W×3 or H×W uint8 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    c = spec.crop
    if c.top + c.bottom >= h or c.left + c.right >= w:
        raise ContractError(f"crop {c.to_dict()} leaves nothing of a {w}×{h} image")
    img: NDArray[Any] = image[c.top : h - c.bottom, c.left : w - c.right]
    if img.ndim == 2:
        if spec.colour != "gray":
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif spec.colour == "gray":
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    elif spec.colour == "bgr":
        img = img[:, :, ::-1]
    if img.shape[0] != spec.height or img.shape[1] != spec.width:
        img = cv2.resize(img, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
    if img.ndim == 2:
        img = img[:, :, None]
    norm = spec.normalisation
    x = img.astype(np.float32) * np.float32(norm.scale)
    mean = np.asarray(norm.mean, dtype=np.float32)
    std = np.asarray(norm.std, dtype=np.float32)
    x = (x - mean) / std
    if spec.layout == "nchw":
        x = np.ascontiguousarray(x.transpose(2, 0, 1))
    return x.astype(np.float32, copy=False)


class FrameStack:
    """The model's input from consecutive frames: each frame from :func:`preprocess` pushed in, the
    last ``spec.frame_count`` of them stacked on the channel axis, oldest first. Until there are
    enough, the first frame stands in for the missing ones (as a DeepRacer episode starts)."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self._frames: list[NDArray[np.float32]] = []

    def push(self, sample: NDArray[np.float32]) -> NDArray[np.float32]:
        n = self.spec.frame_count
        if n == 1:
            return sample
        if not self._frames:
            self._frames = [sample] * n
        self._frames = [*self._frames[1:], sample]
        axis = 0 if self.spec.layout == "nchw" else 2
        return np.ascontiguousarray(np.concatenate(self._frames, axis=axis))


def decode_outputs(card: ModelCard, values: dict[str, NDArray[np.float32]]) -> dict[str, float]:
    """Turn raw output tensors of one sample into ``{"steering": .., "throttle": ..}``.

    Raises :class:`ContractError` if a tensor is missing, has the wrong shape or is not finite
    (a classifier's heads are checked too, by :func:`decode_classes`; it has no steering).
    """
    if card.classes:
        decode_classes(card, values)
    result: dict[str, float] = {}
    for out in card.outputs:
        if out.tensor not in values:
            raise ContractError(f"model has no output tensor {out.tensor!r}")
        arr = np.asarray(values[out.tensor], dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(arr)):
            raise ContractError(f"output {out.tensor!r} is not finite")
        if out.kind == "linear":
            if arr.size != 1:
                raise ContractError(f"linear output {out.tensor!r} has {arr.size} values, expected 1")
            lo, hi = out.range
            result[out.name] = float(np.clip(arr[0], lo, hi))
        else:
            if arr.size != len(out.bins):
                raise ContractError(
                    f"categorical output {out.tensor!r} has {arr.size} values, expected {len(out.bins)}"
                )
            result[out.name] = float(out.bins[int(np.argmax(arr))])
    return result


def output_confidence(card: ModelCard, values: dict[str, NDArray[np.float32]]) -> float | None:
    """The mean softmax probability of the chosen bin over the categorical outputs (None if linear)."""
    probs = []
    for out in card.outputs:
        if out.kind != "categorical" or out.tensor not in values:
            continue
        logits = np.asarray(values[out.tensor], dtype=np.float64).reshape(-1)
        e = np.exp(logits - logits.max())
        probs.append(float(e.max() / e.sum()))
    return sum(probs) / len(probs) if probs else None


def decode_classes(card: ModelCard, values: dict[str, NDArray[np.float32]]) -> dict[str, tuple[str, float]]:
    """A classifier's raw outputs of one sample → ``{task: (class, probability)}``.

    Raises :class:`ContractError` if a head's tensor is missing, of the wrong size, not finite, or
    (``softmax`` false) not a probability distribution.
    """
    result: dict[str, tuple[str, float]] = {}
    for head in card.classes or []:
        if head.tensor not in values:
            raise ContractError(f"model has no output tensor {head.tensor!r}")
        arr = np.asarray(values[head.tensor], dtype=np.float64).reshape(-1)
        if arr.size != len(head.classes):
            raise ContractError(
                f"classifier output {head.tensor!r} has {arr.size} values, expected {len(head.classes)}"
            )
        if not np.all(np.isfinite(arr)):
            raise ContractError(f"output {head.tensor!r} is not finite")
        if head.softmax:
            e = np.exp(arr - arr.max())
            arr = e / e.sum()
        elif arr.min() < -1e-3 or abs(arr.sum() - 1.0) > 0.02:
            raise ContractError(
                f"output {head.tensor!r} is not a probability distribution (sum {arr.sum():.3g})"
            )
        best = int(np.argmax(arr))
        result[head.name] = (head.classes[best], float(arr[best]))
    return result
