"""Training-only image augmentations, applied to the model's input after the card's preprocessing.

The card's :func:`~schemas.model_card.preprocess` (crop, colour, resize, normalise — the car's own
function) runs first, once per frame, and its result is cached; augmentations then work on that
small image, turned back into pixel units (``(x · std + mean) / scale``: 0–255, planar float32)
and normalised again afterwards. Brightness, contrast and shadows are the same as on the camera
image (they are per-pixel, and the normalisation is affine); blur and shifts act at the model's
resolution, where they are cheap: an augmented sample costs a few tens of microseconds, so loading
stays far below the time of a training step even for a tiny model.

Every augmentation takes its randomness from the numbers it is given, which the training sampler
derives from ``(seed, epoch)``, so a sample's augmentation is the same for any number of loader
workers or training processes. A horizontal flip mirrors the image and negates the steering
(steering -1 is full left).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from schemas.model_card import InputSpec

Image = NDArray[np.float32]  # C×H×W, pixel units (0–255)


class AugmentConfig(BaseModel):
    """Probabilities and magnitudes of each augmentation (set a probability to 0 to turn one off)."""

    model_config = ConfigDict(extra="forbid")

    brightness: float = Field(default=0.25, ge=0, le=1, description="max relative brightness change")
    contrast: float = Field(default=0.25, ge=0, le=1, description="max relative contrast change")
    colour_p: float = Field(default=0.8, ge=0, le=1, description="probability of brightness/contrast")
    blur_p: float = Field(default=0.2, ge=0, le=1, description="probability of a Gaussian blur")
    blur_sigma: tuple[float, float] = Field(default=(0.4, 1.0), description="blur sigma range, model pixels")
    shadow_p: float = Field(default=0.3, ge=0, le=1, description="probability of a random shadow")
    shadow_darkness: tuple[float, float] = (0.4, 0.8)
    flip_p: float = Field(default=0.5, ge=0, le=1, description="probability of a mirror (steering negated)")
    shift_p: float = Field(default=0.5, ge=0, le=1, description="probability of a small shift")
    shift: float = Field(default=0.03, ge=0, le=0.3, description="largest shift, fraction of width/height")
    shift_steering: float = Field(
        default=0.0, ge=0, le=2, description="steering added per image width shifted right (recovery hint)"
    )

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(colour_p=0, blur_p=0, shadow_p=0, flip_p=0, shift_p=0)

    @property
    def enabled(self) -> bool:
        return any(p > 0 for p in (self.colour_p, self.blur_p, self.shadow_p, self.flip_p, self.shift_p))


# --- between the model's input and pixel units ----------------------------------------------------
class PixelSpace:
    """Converts a preprocessed sample to planar pixel units (``C×H×W``, 0–255) and back, per the
    card: ``pixels = (x · std + mean) / scale``. Built once per input spec (the conversion is hot)."""

    def __init__(self, spec: InputSpec) -> None:
        n = spec.normalisation
        std = np.broadcast_to(np.asarray(n.std, dtype=np.float64), (spec.channels,))
        mean = np.broadcast_to(np.asarray(n.mean, dtype=np.float64), (spec.channels,))
        self.nchw = spec.layout == "nchw"
        self.a = (std / n.scale).astype(np.float32).reshape(-1, 1, 1)
        self.b = (mean / n.scale).astype(np.float32).reshape(-1, 1, 1)
        self.inv_a = (n.scale / std).astype(np.float32).reshape(-1, 1, 1)
        self.c = (-mean / std).astype(np.float32).reshape(-1, 1, 1)
        # With one mean and std for every channel the augmentations run on the normalised sample
        # itself (``pixels = unit · x + offset``), skipping two passes over the batch.
        self.uniform = bool(np.all(std == std[0]) and np.all(mean == mean[0]) and self.nchw)
        self.unit = float(std[0] / n.scale)
        self.offset = float(mean[0] / n.scale)

    def to_pixels(self, x: NDArray[np.float32]) -> Image:
        """One sample (3-d) or a batch (4-d) in the card's layout → planar pixel units."""
        planar = x if self.nchw else np.moveaxis(x, -1, -3)
        out: Image = planar * self.a
        out += self.b
        return out

    def from_pixels(self, image: Image) -> NDArray[np.float32]:
        """Planar pixel units (3-d or 4-d) → normalised, in the card's layout."""
        x = image * self.inv_a
        x += self.c
        return x if self.nchw else np.ascontiguousarray(np.moveaxis(x, -3, -1))


def to_pixels(x: NDArray[np.float32], spec: InputSpec) -> Image:
    """A preprocessed sample back in pixel units, planar ``C×H×W`` (a new array)."""
    return PixelSpace(spec).to_pixels(x)


def from_pixels(image: Image, spec: InputSpec) -> NDArray[np.float32]:
    """The inverse of :func:`to_pixels`: normalised, in the card's layout."""
    return PixelSpace(spec).from_pixels(image)


# --- the augmentations (planar C×H×W float32 in pixel units; numpy and OpenCV on each plane) ------
def blur(image: Image, sigma: float) -> Image:
    k = 2 * max(1, round(2 * sigma)) + 1
    out = np.empty_like(image)
    for c in range(image.shape[0]):
        cv2.GaussianBlur(image[c], (k, k), sigma, dst=out[c])
    return out


def shadow(image: Image, darkness: float, corners: Any, unit: float = 1.0, offset: float = 0.0) -> Image:
    """Darken the quadrilateral between two top and two bottom x positions (``corners``, in [0, 1)).

    ``unit``/``offset``: the image holds ``(pixels - offset) / unit`` (1 and 0 for pixel units).
    """
    h, w = image.shape[1:]
    t0, t1 = sorted((corners[0] * w, corners[1] * w))
    b0, b1 = sorted((corners[2] * w, corners[3] * w))
    poly = np.array([[t0, 0], [t1, 0], [b1, h - 1], [b0, h - 1]], dtype=np.int32)
    factor = np.ones((h, w), dtype=np.float32)
    cv2.fillConvexPoly(factor, poly, float(darkness))
    out: Image = image * factor
    if offset:
        # pixels · d, in these units: x · d + (d - 1) · offset / unit
        out += (factor - 1.0) * np.float32(offset / unit)
    return out


def flip(image: Image) -> Image:
    return np.ascontiguousarray(image[:, :, ::-1])


def shift(image: Image, dx: int, dy: int) -> Image:
    """Translate by whole pixels, repeating the edge rows and columns into the gap."""
    h, w = image.shape[1:]
    if abs(dx) >= w or abs(dy) >= h:
        raise ValueError(f"shift ({dx}, {dy}) is larger than the {w}×{h} image")
    out = np.empty_like(image)
    out[:, max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)] = image[
        :, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)
    ]
    if dy > 0:
        out[:, :dy] = out[:, dy : dy + 1]
    elif dy < 0:
        out[:, h + dy :] = out[:, h + dy - 1 : h + dy]
    if dx > 0:
        out[:, :, :dx] = out[:, :, dx : dx + 1]
    elif dx < 0:
        out[:, :, w + dx :] = out[:, :, w + dx - 1 : w + dx]
    return out


DRAWS = 15
"""Uniform numbers one augmentation consumes (see :func:`augment`)."""


def augment_batch(
    images: NDArray[np.float32],
    steering: NDArray[np.float32],
    draws: NDArray[np.floating[Any]],
    config: AugmentConfig,
    unit: float = 1.0,
    offset: float = 0.0,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Augment a batch ``B×C×H×W`` (float32) in place with ``draws`` (``B×DRAWS`` uniform numbers
    in [0, 1)); return the batch and its (new) steering.

    The batch holds ``(pixels - offset) / unit``: pixel units by default, or a normalised batch
    whose channels share one mean and std (:class:`PixelSpace`). Every augmentation is an affine
    or linear map of the pixels, so it is applied in those units directly.

    Each augmentation goes to the samples that drew it, in a fixed order: colour, shadow, blur,
    shift, mirror.
    """
    u = np.asarray(draws, dtype=np.float64).reshape(len(images), DRAWS)
    steering = np.array(steering, dtype=np.float32, copy=True)
    h, w = images.shape[2:]
    # One sample at a time: each stays in the CPU cache while it is worked on (whole-batch array
    # operations stream the batch through memory once per operation, several times slower).
    low, high = -offset / unit, (255.0 - offset) / unit  # pixels 0 and 255
    for i in np.flatnonzero(u[:, 0] < config.colour_p):
        plane = images[i].reshape(-1, w)  # a view: OpenCV's fused passes write into the batch
        mean = unit * cv2.mean(plane)[0] + offset  # in pixels
        alpha = 1.0 + (2 * u[i, 2] - 1) * config.contrast
        beta = mean * (1.0 + (2 * u[i, 1] - 1) * config.brightness) - mean * alpha
        # pixels · alpha + beta, in these units
        cv2.addWeighted(plane, alpha, plane, 0.0, (alpha * offset + beta - offset) / unit, dst=plane)
        cv2.threshold(plane, high, high, cv2.THRESH_TRUNC, dst=plane)
        np.maximum(plane, np.float32(low), out=plane)
    lo, hi = config.shadow_darkness
    for i in np.flatnonzero(u[:, 3] < config.shadow_p):
        images[i] = shadow(images[i], lo + (hi - lo) * u[i, 4], u[i, 5:9], unit, offset)
    lo, hi = config.blur_sigma
    for i in np.flatnonzero(u[:, 9] < config.blur_p):
        images[i] = blur(images[i], lo + (hi - lo) * u[i, 10])
    if config.shift > 0:
        max_dx, max_dy = round(config.shift * w), round(config.shift * h)
        for i in np.flatnonzero(u[:, 11] < config.shift_p):
            dx = int(u[i, 12] * (2 * max_dx + 1)) - max_dx
            dy = int(u[i, 13] * (2 * max_dy + 1)) - max_dy
            if dx or dy:
                images[i] = shift(images[i], dx, dy)
            # Seeing the road shifted right means the car sits left of where it was: steer right.
            steering[i] += config.shift_steering * dx / w
    for i in np.flatnonzero(u[:, 14] < config.flip_p):
        images[i] = flip(images[i])
        steering[i] = -steering[i]
    np.clip(steering, -1.0, 1.0, out=steering)
    return images, steering


def augment(
    image: Image,
    steering: float,
    draws: np.random.Generator | NDArray[np.floating[Any]],
    config: AugmentConfig,
) -> tuple[Image, float]:
    """Apply a random subset of the configured augmentations to one ``image`` (pixel units, planar
    C×H×W float32); return the new image and its steering.

    ``draws`` is a generator or :data:`DRAWS` uniform numbers in [0, 1) (the training sampler
    draws them for a whole epoch at once: a generator per sample costs more than the image work).
    """
    u = draws.random(DRAWS) if isinstance(draws, np.random.Generator) else np.asarray(draws)
    batch, new = augment_batch(image[None].copy(), np.array([steering], dtype=np.float32), u[None], config)
    return batch[0], float(new[0])


def augment_sample(
    x: NDArray[np.float32],
    steering: float,
    draws: np.random.Generator | NDArray[np.floating[Any]],
    config: AugmentConfig,
    space: PixelSpace,
) -> tuple[NDArray[np.float32], float]:
    """:func:`augment` on one preprocessed sample (the card's layout and normalisation in and out)."""
    u = draws.random(DRAWS) if isinstance(draws, np.random.Generator) else np.asarray(draws)
    batch, new = augment_samples(
        x[None].copy(), np.array([steering], dtype=np.float32), u[None], config, space
    )
    return batch[0], float(new[0])


def augment_samples(
    x: NDArray[np.float32],
    steering: NDArray[np.float32],
    draws: NDArray[np.floating[Any]],
    config: AugmentConfig,
    space: PixelSpace,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """:func:`augment_batch` on a batch of preprocessed samples (the card's layout and
    normalisation in and out; ``x`` may be changed in place)."""
    if space.uniform:
        return augment_batch(x, steering, draws, config, space.unit, space.offset)
    pixels, steering = augment_batch(space.to_pixels(x), steering, draws, config)
    return space.from_pixels(pixels), steering
