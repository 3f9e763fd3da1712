"""Input statistics: a cheap summary of the camera images a model sees.

The car reports them in its telemetry (for the frames its model saw lately) and the trainer
stores them in the model card (for the frames it learned from); the hub compares the two to tell
when the world has changed (drift). Both sides use :class:`InputStatsAccumulator`, so the
summary cannot differ by implementation.

The summary is a brightness histogram (luma, :data:`BINS` equal bins over 0..255), a colour
histogram (:data:`BINS` bins per channel, red then green then blue) and the mean brightness. An
image is subsampled by :data:`STRIDE` in both directions first: a 160×120 frame costs about
0.1 ms, cheap enough to run at the telemetry rate off the control loop.

Where the model gives one (its card's ``features``), the summary also holds the mean and standard
deviation of each of the network's feature values (:class:`FeatureStats`, a small fixed projection
of its penultimate layer that the model computes beside its outputs). Pixels tell when the light
or the colours change; features tell when the network sees something it was not trained on, also
where the histograms stay the same (the track driven the other way round, a mirrored camera).
:func:`feature_drift` compares two of them.
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from schemas.base import WireModel

BINS = 8
EPSILON = 1e-4  # the floor of an empty bin in psi()
MAX_FEATURES = 256  # feature values a summary may hold (a model's card declares how many it gives)
STD_FLOOR = 1e-3  # the floor of the pooled standard deviation in feature_drift()
STRIDE = 4
_LUMA = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)


class FeatureStats(WireModel):
    """The mean and standard deviation of each of the network's feature values over ``samples``."""

    samples: int = Field(ge=1, description="frames whose features are summarised")
    mean: list[float] = Field(min_length=1, max_length=MAX_FEATURES)
    std: list[float] = Field(min_length=1, max_length=MAX_FEATURES)

    @model_validator(mode="after")
    def _check(self) -> "FeatureStats":
        if len(self.mean) != len(self.std):
            raise ValueError(f"{len(self.mean)} means and {len(self.std)} standard deviations")
        if any(v < 0 for v in self.std):
            raise ValueError("a standard deviation is negative")
        return self


class InputStats(WireModel):
    """Histograms (fractions summing to 1) of the images seen, and how many images they summarise."""

    frames: int = Field(ge=0, description="images summarised")
    brightness_mean: float = Field(ge=0, le=1, description="mean luma, 0 = black, 1 = white")
    brightness_hist: list[float] = Field(description=f"{BINS} fractions of luma over 0..255")
    colour_hist: list[float] = Field(description=f"{3 * BINS} fractions: {BINS} red, green, blue bins")
    features: FeatureStats | None = Field(
        default=None, description="the network's features over the same frames (models that give them)"
    )

    @model_validator(mode="after")
    def _check(self) -> "InputStats":
        if len(self.brightness_hist) != BINS or len(self.colour_hist) != 3 * BINS:
            raise ValueError(f"expected {BINS} brightness and {3 * BINS} colour bins")
        return self


class InputStatsAccumulator:
    """Adds images (``H×W×3`` RGB or ``H×W`` gray uint8) into histogram counts."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self._luma_sum = 0.0
        self._pixels = 0
        self._brightness = np.zeros(BINS, dtype=np.int64)
        self._colour = np.zeros((3, BINS), dtype=np.int64)

    def add(self, image: NDArray[np.uint8]) -> None:
        small: NDArray[Any] = image[::STRIDE, ::STRIDE]
        rgb = np.repeat(small[:, :, None], 3, axis=2) if small.ndim == 2 else small[:, :, :3]
        luma = rgb.reshape(-1, 3).astype(np.float32) @ _LUMA
        self._brightness += np.bincount(_bin(luma), minlength=BINS)
        for c in range(3):
            self._colour[c] += np.bincount(_bin(rgb[:, :, c].reshape(-1)), minlength=BINS)
        self._luma_sum += float(luma.sum())
        self._pixels += int(luma.size)
        self.frames += 1

    def stats(self) -> InputStats | None:
        """The summary so far (None before the first image)."""
        if not self.frames:
            return None
        bright = self._brightness / max(1, int(self._brightness.sum()))
        colour = self._colour / np.maximum(1, self._colour.sum(axis=1, keepdims=True))
        return InputStats(
            frames=self.frames,
            brightness_mean=round(self._luma_sum / self._pixels / 255.0, 4),
            brightness_hist=[round(float(v), 5) for v in bright],
            colour_hist=[round(float(v), 5) for v in colour.reshape(-1)],
        )


class FeatureStatsAccumulator:
    """Adds feature vectors (one per frame, the model's ``features`` output) into sums."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.samples = 0
        self._sum: NDArray[np.float64] | None = None
        self._squares: NDArray[np.float64] | None = None

    def add(self, features: NDArray[Any]) -> None:
        """One frame's features; a vector of another length than the first is ignored (a swap)."""
        x = np.asarray(features, dtype=np.float64).reshape(-1)
        if not 0 < x.size <= MAX_FEATURES or not np.all(np.isfinite(x)):
            return
        if self._sum is None or self._squares is None:
            self._sum, self._squares = np.zeros_like(x), np.zeros_like(x)
        elif x.size != self._sum.size:
            return
        self._sum += x
        self._squares += x * x
        self.samples += 1

    def stats(self) -> FeatureStats | None:
        if not self.samples or self._sum is None or self._squares is None:
            return None
        mean = self._sum / self.samples
        std = np.sqrt(np.maximum(self._squares / self.samples - mean * mean, 0.0))
        return FeatureStats(
            samples=self.samples,
            mean=[round(float(v), 5) for v in mean],
            std=[round(float(v), 5) for v in std],
        )


def _bin(values: NDArray[Any]) -> NDArray[np.intp]:
    return np.minimum(values.astype(np.int32) * BINS // 256, BINS - 1).astype(np.intp)


def psi(reference: Sequence[float], live: Sequence[float]) -> float:
    """The population stability index of two histograms of the same bins (each normalised to
    fractions here): ``Σ (live - ref) · ln(live / ref)``. Below 0.1 nothing changed, 0.1-0.25 a
    moderate shift, above 0.25 a major one. Empty bins are floored at :data:`EPSILON`, so a bin empty
    on one side gives a large, finite term. A dozen lines of arithmetic on 32 numbers: written here
    rather than pulled from a statistics library; the hub and the car both call it."""
    if len(reference) != len(live) or not reference:
        raise ValueError(f"histograms of {len(reference)} and {len(live)} bins")
    ref_total, live_total = sum(reference) or 1.0, sum(live) or 1.0
    score = 0.0
    for r, x in zip(reference, live, strict=True):
        r, x = max(r / ref_total, EPSILON), max(x / live_total, EPSILON)
        score += (x - r) * math.log(x / r)
    return score


def input_drift(reference: InputStats, live: InputStats) -> float:
    """The largest PSI over brightness and the three colour channels."""
    scores = [psi(reference.brightness_hist, live.brightness_hist)]
    for c in range(3):
        part = slice(c * BINS, (c + 1) * BINS)
        scores.append(psi(reference.colour_hist[part], live.colour_hist[part]))
    return max(scores)


def feature_drift(reference: FeatureStats, live: FeatureStats) -> float:
    """How far the network's features moved, in standard deviations: the root mean square over
    features of the standardised mean difference ``d = Δ mean / pooled std`` (pooled:
    ``sqrt((σ_ref² + σ_live²) / 2)``, floored at :data:`STD_FLOOR` so that a feature constant on both
    sides counts as unchanged), less what sampling alone gives it: with no change, ``d²`` averages
    ``1/n_live + 1/n_ref`` (a 10-frame window's means wander by a third of a standard deviation).
    So 0 is no measurable change and 0.2 / 0.5 / 0.8 read as a small / medium / large shift
    (Cohen's d). Summaries of different lengths (another model's) raise ``ValueError``."""
    if len(reference.mean) != len(live.mean):
        raise ValueError(f"feature summaries of {len(reference.mean)} and {len(live.mean)} values")
    ref_mean, live_mean = np.asarray(reference.mean), np.asarray(live.mean)
    pooled = np.sqrt((np.square(reference.std) + np.square(live.std)) / 2.0)
    d2 = np.square((live_mean - ref_mean) / np.maximum(pooled, STD_FLOOR))
    noise = 1.0 / live.samples + 1.0 / reference.samples
    return float(np.sqrt(max(0.0, float(np.mean(d2)) - noise)))
