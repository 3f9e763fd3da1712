"""Behavioural-cloning models: camera image in, steering and throttle out.

Each model takes the card's input tensor (``[batch, C, H, W]``) and returns one tensor per card
output, in the card's order: ``[batch, 1]`` for a linear output, ``[batch, bins]`` logits for a
categorical one. :meth:`PilotModel.card` describes exactly that, so the car preprocesses and decodes
as the trainer did.

* ``linear`` — DonkeyCar's ``KerasLinear``: five convolutions (24, 32, 64 with 5×5 stride 2; 64, 64
  with 3×3), two dense layers (100, 50) with dropout, one linear unit per output.
* ``categorical`` — the same body with DonkeyCar's ``KerasCategorical`` heads: 15 steering bins and
  20 throttle bins, trained with cross-entropy.
* ``mobilenet`` — a small MobileNet-style net: a strided stem and depthwise-separable blocks with
  batch norm and ReLU6, a 1×1 squeeze and a small dense head (few multiply-adds; int8-friendly).

The default, ``mobilenet``, is chosen for inference speed on a Raspberry Pi's CPU; see
``DEFAULT_ARCHITECTURE``.

Every model also gives :data:`FEATURE_SIZE` feature values per sample (:meth:`PilotModel.feature_values`,
exported as the ``features`` output): a fixed random projection of the penultimate layer, the same
for every model of a width (seeded), so the car can summarise what its network sees for the drift
monitor (schemas.input_stats.FeatureStats) at the price of one small matrix product.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from schemas.model_card import Crop, FeaturesSpec, InputSpec, ModelCard, Normalisation, OutputSpec

ACTION_INDEX = {"steering": 0, "throttle": 1}
FEATURE_SIZE = 16
FEATURE_TENSOR = "features"
FEATURE_SEED = 1729


def feature_projection(width: int) -> torch.Tensor:
    """The ``width × FEATURE_SIZE`` Gaussian random projection (scaled by ``1/sqrt(width)``, so the
    values keep the activations' scale): fixed by its seed, not learned, never in a checkpoint."""
    rng = np.random.default_rng(FEATURE_SEED)
    return torch.from_numpy((rng.standard_normal((width, FEATURE_SIZE)) / np.sqrt(width)).astype(np.float32))


class ModelOptions(BaseModel):
    """The input the model takes (from a camera image of ``camera_width × camera_height``) and its size."""

    model_config = ConfigDict(extra="forbid")

    camera_width: int = Field(default=160, gt=0, description="width of the recorded images")
    camera_height: int = Field(default=120, gt=0, description="height of the recorded images")
    crop_top: int = Field(default=40, ge=0, description="rows removed at the top (sky, horizon)")
    crop_bottom: int = Field(default=0, ge=0)
    width: int = Field(default=160, gt=0, le=1024, description="model input width after crop/resize")
    height: int = Field(default=80, gt=0, le=1024, description="model input height after crop/resize")
    colour: str = Field(default="rgb", pattern="^(rgb|bgr|gray)$")
    outputs: list[str] = Field(default_factory=lambda: ["steering", "throttle"], min_length=1)
    throttle_range: tuple[float, float] = (-1.0, 1.0)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    width_multiplier: float = Field(default=1.0, gt=0, le=4, description="channel scale (mobilenet)")
    steering_bins: int = Field(default=15, ge=2, le=255, description="categorical steering bins")
    throttle_bins: int = Field(default=20, ge=2, le=255, description="categorical throttle bins")

    def input_spec(self) -> InputSpec:
        if self.crop_top + self.crop_bottom >= self.camera_height:
            raise ValueError(f"crop_top + crop_bottom leaves nothing of a {self.camera_height}-row image")
        return InputSpec(
            width=self.width,
            height=self.height,
            colour=self.colour,
            crop=Crop(top=self.crop_top, bottom=self.crop_bottom),
            normalisation=Normalisation(scale=1 / 255, mean=[0.5], std=[0.5]),
            layout="nchw",
        )


def _range(name: str, opts: ModelOptions) -> tuple[float, float]:
    return opts.throttle_range if name == "throttle" else (-1.0, 1.0)


class PilotModel(nn.Module):
    """Base of every model: the card, the loss and turning raw outputs into actions."""

    architecture = ""
    description = ""

    def __init__(self, options: ModelOptions) -> None:
        super().__init__()
        for name in options.outputs:
            if name not in ACTION_INDEX:
                raise ValueError(f"unknown output {name!r}; expected steering and/or throttle")
        self.options = options
        self.spec = options.input_spec()

    # --- description ----------------------------------------------------------------------------
    def output_specs(self) -> list[OutputSpec]:
        return [
            OutputSpec(name=n, kind="linear", range=_range(n, self.options)) for n in self.options.outputs
        ]

    def card(self, training: dict[str, Any] | None = None) -> ModelCard:
        width = self.projection.shape[0]
        return ModelCard(
            architecture=self.architecture,
            input=self.spec,
            outputs=self.output_specs(),
            description=self.description,
            training=training or {},
            features=FeaturesSpec(
                tensor=FEATURE_TENSOR,
                size=FEATURE_SIZE,
                source=f"the {width} penultimate activations by a fixed random projection "
                f"(seed {FEATURE_SEED})",
            ),
        )

    # --- the network ----------------------------------------------------------------------------
    heads: nn.ModuleList
    projection: torch.Tensor

    def _add_heads(self, heads: list[nn.Linear]) -> None:
        """The output layers, one per card output, on the penultimate layer (the feature values' source)."""
        self.heads = nn.ModuleList(heads)
        # Not persistent: checkpoints stay as they were, and the seed makes it the same every time.
        self.register_buffer("projection", feature_projection(heads[0].in_features), persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer's activations, ``[batch, width]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.embed(x)
        return tuple(head(h) for head in self.heads)

    def with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The outputs, then the feature values ``[batch, FEATURE_SIZE]`` (what the export computes)."""
        h = self.embed(x)
        return (*(head(h) for head in self.heads), h @ self.projection)

    def feature_values(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x) @ self.projection

    @property
    def output_names(self) -> list[str]:
        return [o.tensor for o in self.output_specs()]

    # --- learning -------------------------------------------------------------------------------
    def loss(
        self, outputs: Sequence[torch.Tensor], targets: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean (optionally weighted) loss over the batch; ``targets`` is ``[batch, 2]``."""
        total = torch.zeros((), dtype=torch.float32)
        for out, spec in zip(outputs, self.output_specs(), strict=True):
            y = targets[:, ACTION_INDEX[spec.name]]
            per_sample = self._loss_one(out, y, spec)
            if weights is not None:
                per_sample = per_sample * weights
            total = total + per_sample.mean() * (0.5 if spec.name == "throttle" else 1.0)
        return total

    def _loss_one(self, out: torch.Tensor, y: torch.Tensor, spec: OutputSpec) -> torch.Tensor:
        return F.mse_loss(out.reshape(-1), y, reduction="none")

    def decode(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Actions ``[batch, len(outputs)]`` as the car would read them (clipped, bin centres)."""
        cols = []
        for out, spec in zip(outputs, self.output_specs(), strict=True):
            if spec.kind == "linear":
                lo, hi = spec.range
                cols.append(out.reshape(-1).clamp(lo, hi))
            else:
                centres = torch.tensor(spec.bins, dtype=out.dtype, device=out.device)
                cols.append(centres[out.argmax(dim=1)])
        return torch.stack(cols, dim=1)


class _DonkeyBody(nn.Module):
    """DonkeyCar's convolutional body and dense layers."""

    def __init__(self, channels: int, height: int, width: int, dropout: float) -> None:
        super().__init__()
        # DonkeyCar's 3×3 convolutions are unpadded; below ~61 pixels they would consume the whole
        # feature map, so small inputs pad them instead (same layers, same parameter count).
        pad = 0 if min(height, width) >= 61 else 1
        layers: list[nn.Module] = []
        cin = channels
        for cout, k, s, p in ((24, 5, 2, 0), (32, 5, 2, 0), (64, 5, 2, 0), (64, 3, 1, pad), (64, 3, 1, pad)):
            layers += [nn.Conv2d(cin, cout, k, s, p), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            cin = cout
        self.conv = nn.Sequential(*layers)
        try:
            with torch.no_grad():
                n = self.conv(torch.zeros(1, channels, height, width)).numel()
        except RuntimeError:
            n = 0
        if n == 0:
            raise ValueError(f"a {width}×{height} input is too small for the DonkeyCar body (at least 29×29)")
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n, 100),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(100, 50),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dense(self.conv(x))
        return out


class LinearPilot(PilotModel):
    architecture = "linear"
    description = "DonkeyCar-style linear CNN: 5 convolutions, dense 100/50, one linear unit per output"

    def __init__(self, options: ModelOptions) -> None:
        super().__init__(options)
        s = self.spec
        self.body = _DonkeyBody(s.channels, s.height, s.width, options.dropout)
        self._add_heads([nn.Linear(50, 1) for _ in options.outputs])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out


class CategoricalPilot(PilotModel):
    architecture = "categorical"
    description = "DonkeyCar-style categorical CNN: the linear body with binned steering and throttle"

    def __init__(self, options: ModelOptions) -> None:
        super().__init__(options)
        s = self.spec
        self.body = _DonkeyBody(s.channels, s.height, s.width, options.dropout)
        self._add_heads([nn.Linear(50, len(spec.bins)) for spec in self.output_specs()])

    def output_specs(self) -> list[OutputSpec]:
        specs = []
        for name in self.options.outputs:
            lo, hi = _range(name, self.options)
            n = self.options.steering_bins if name == "steering" else self.options.throttle_bins
            bins = [round(float(v), 6) for v in np.linspace(lo, hi, n)]
            specs.append(OutputSpec(name=name, kind="categorical", range=(lo, hi), bins=bins))
        return specs

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out

    def _loss_one(self, out: torch.Tensor, y: torch.Tensor, spec: OutputSpec) -> torch.Tensor:
        return F.cross_entropy(out, bin_index(y, spec.bins), reduction="none")


def bin_index(values: torch.Tensor, bins: Sequence[float]) -> torch.Tensor:
    """Index of the nearest bin centre for each value."""
    centres = torch.tensor(list(bins), dtype=values.dtype, device=values.device)
    return (values.reshape(-1, 1) - centres.reshape(1, -1)).abs().argmin(dim=1)


def _separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU6(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class MobilePilot(PilotModel):
    architecture = "mobilenet"
    description = "small MobileNet-style CNN: depthwise-separable blocks, batch norm, ReLU6, dense head"

    def __init__(self, options: ModelOptions) -> None:
        super().__init__(options)
        s = self.spec

        def ch(c: int) -> int:
            return max(8, round(c * options.width_multiplier / 8) * 8)

        widths = [ch(16), ch(24), ch(32), ch(48), ch(64)]
        layers: list[nn.Module] = [
            nn.Conv2d(s.channels, widths[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU6(inplace=True),
        ]
        for cin, cout in itertools.pairwise(widths):
            layers.append(_separable(cin, cout, 2))
        layers += [nn.Conv2d(widths[-1], 16, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            n = self.features(torch.zeros(1, s.channels, s.height, s.width)).numel()
        self.dense = nn.Sequential(
            nn.Flatten(), nn.Dropout(options.dropout), nn.Linear(n, 64), nn.ReLU(inplace=True)
        )
        self._add_heads([nn.Linear(64, 1) for _ in options.outputs])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dense(self.features(x))
        return out


ARCHITECTURES: dict[str, Callable[[ModelOptions], PilotModel]] = {
    "linear": LinearPilot,
    "categorical": CategoricalPilot,
    "mobilenet": MobilePilot,
}
# The fastest of the three on one CPU thread, by far, in ONNX Runtime and TFLite (about 0.1 ms against
# 0.7 ms for `linear` at 160×80; tests/bench/bench_train_inference.py), and it learns to lap as well.
DEFAULT_ARCHITECTURE = "mobilenet"


def build_model(architecture: str, options: ModelOptions | dict[str, Any] | None = None) -> PilotModel:
    """A fresh model of ``architecture`` (``linear``, ``categorical`` or ``mobilenet``)."""
    try:
        factory = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}"
        ) from None
    if options is None:
        options = ModelOptions()
    elif isinstance(options, dict):
        options = ModelOptions.model_validate(options)
    return factory(options)
