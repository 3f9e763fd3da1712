"""Training-only image augmentations, applied to the camera image before the card's preprocessing.

Every augmentation takes its randomness from the numbers it is given, which the training sampler
derives from ``(seed, epoch)``, so a sample's augmentation is the same for any number of loader
workers or training processes.
A horizontal flip mirrors the image and negates the steering (steering -1 is full left).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

Image = NDArray[np.uint8]


class AugmentConfig(BaseModel):
    """Probabilities and magnitudes of each augmentation (set a probability to 0 to turn one off)."""

    model_config = ConfigDict(extra="forbid")

    brightness: float = Field(default=0.25, ge=0, le=1, description="max relative brightness change")
    contrast: float = Field(default=0.25, ge=0, le=1, description="max relative contrast change")
    colour_p: float = Field(default=0.8, ge=0, le=1, description="probability of brightness/contrast")
    blur_p: float = Field(default=0.2, ge=0, le=1, description="probability of a Gaussian blur")
    blur_max_kernel: int = Field(default=5, ge=3, le=15, description="largest (odd) blur kernel")
    shadow_p: float = Field(default=0.3, ge=0, le=1, description="probability of a random shadow")
    shadow_darkness: tuple[float, float] = (0.4, 0.8)
    flip_p: float = Field(default=0.5, ge=0, le=1, description="probability of a mirror (steering negated)")
    shift_p: float = Field(default=0.5, ge=0, le=1, description="probability of a small shift")
    shift_px: int = Field(default=4, ge=0, le=64, description="largest shift in pixels, each axis")
    shift_steering_per_px: float = Field(
        default=0.0, ge=0, le=0.1, description="steering added per pixel shifted right (recovery hint)"
    )

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(colour_p=0, blur_p=0, shadow_p=0, flip_p=0, shift_p=0)

    @property
    def enabled(self) -> bool:
        return any(p > 0 for p in (self.colour_p, self.blur_p, self.shadow_p, self.flip_p, self.shift_p))


def brightness_contrast(image: Image, brightness: float, contrast: float) -> Image:
    """``out = (image - mean) * (1 + contrast) + mean * (1 + brightness)``, saturated to uint8."""
    channels = image.shape[2] if image.ndim == 3 else 1
    mean = sum(cv2.mean(image)[:channels]) / channels
    alpha = 1.0 + contrast
    beta = mean * (1.0 + brightness) - mean * alpha
    return np.asarray(cv2.convertScaleAbs(image, alpha=alpha, beta=beta), dtype=np.uint8)


def blur(image: Image, kernel: int) -> Image:
    return np.asarray(cv2.GaussianBlur(image, (kernel, kernel), 0), dtype=np.uint8)


def shadow(image: Image, rng: np.random.Generator | None, darkness: float, corners: Any = None) -> Image:
    """Darken a random quadrilateral reaching from the top edge to the bottom edge.

    ``corners`` (four numbers in [0, 1): two top and two bottom x positions) replace the draws from ``rng``.
    """
    h, w = image.shape[:2]
    c = rng.random(4) if corners is None else corners  # type: ignore[union-attr]
    t0, t1 = sorted((c[0] * w, c[1] * w))
    b0, b1 = sorted((c[2] * w, c[3] * w))
    poly = np.array([[t0, 0], [t1, 0], [b1, h - 1], [b0, h - 1]], dtype=np.int32)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillConvexPoly(mask, poly, 1)
    out = image.copy()
    dark = cv2.convertScaleAbs(image, alpha=darkness)
    cv2.copyTo(dark, mask, out)
    return out


def flip(image: Image) -> Image:
    return np.asarray(cv2.flip(image, 1), dtype=np.uint8)


def shift(image: Image, dx: int, dy: int) -> Image:
    """Translate by whole pixels, repeating the edge rows and columns into the gap."""
    h, w = image.shape[:2]
    if abs(dx) >= w or abs(dy) >= h:
        raise ValueError(f"shift ({dx}, {dy}) is larger than the {w}×{h} image")
    inner = image[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out = cv2.copyMakeBorder(inner, max(0, dy), max(0, -dy), max(0, dx), max(0, -dx), cv2.BORDER_REPLICATE)
    return np.asarray(out, dtype=np.uint8)


DRAWS = 15
"""Uniform numbers one augmentation consumes (see :func:`augment`)."""


def augment(
    image: Image,
    steering: float,
    draws: np.random.Generator | NDArray[np.floating[Any]],
    config: AugmentConfig,
) -> tuple[Image, float]:
    """Apply a random subset of the configured augmentations; return the image and its steering.

    ``draws`` is a generator or :data:`DRAWS` uniform numbers in [0, 1) (the training sampler
    draws them for a whole epoch at once: a generator per sample costs more than the image work).
    """
    u = draws.random(DRAWS) if isinstance(draws, np.random.Generator) else draws
    out: Any = image
    if u[0] < config.colour_p:
        b = (2 * u[1] - 1) * config.brightness
        c = (2 * u[2] - 1) * config.contrast
        out = brightness_contrast(out, b, c)
    if u[3] < config.shadow_p:
        lo, hi = config.shadow_darkness
        out = shadow(out, None, lo + (hi - lo) * u[4], corners=u[5:9])
    if u[9] < config.blur_p:
        largest = config.blur_max_kernel - (1 - config.blur_max_kernel % 2)  # odd
        out = blur(out, 2 * (1 + int(u[10] * (largest // 2))) + 1)
    if u[11] < config.shift_p and config.shift_px:
        span = 2 * config.shift_px + 1
        dx = int(u[12] * span) - config.shift_px
        dy = int(u[13] * span) - config.shift_px
        out = shift(out, dx, dy)
        # Seeing the road shifted right means the car sits left of where it was: steer right.
        steering = steering + dx * config.shift_steering_per_px
    if u[14] < config.flip_p:
        out = flip(out)
        steering = -steering
    return out, min(1.0, max(-1.0, float(steering)))
