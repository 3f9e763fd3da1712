"""Training-only image augmentations, applied to the camera image before the card's preprocessing.

Every augmentation draws from the generator it is given, so a sample's augmentation depends only on
``(seed, epoch, draw)`` — the same for any number of loader workers or training processes.
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
    mean = float(image.mean())
    alpha = 1.0 + contrast
    beta = mean * (1.0 + brightness) - mean * alpha
    return np.asarray(cv2.convertScaleAbs(image, alpha=alpha, beta=beta), dtype=np.uint8)


def blur(image: Image, kernel: int) -> Image:
    return np.asarray(cv2.GaussianBlur(image, (kernel, kernel), 0), dtype=np.uint8)


def shadow(image: Image, rng: np.random.Generator, darkness: float) -> Image:
    """Darken a random quadrilateral reaching from the top edge to the bottom edge."""
    h, w = image.shape[:2]
    x_top = np.sort(rng.uniform(0, w, 2))
    x_bottom = np.sort(rng.uniform(0, w, 2))
    poly = np.array(
        [[x_top[0], 0], [x_top[1], 0], [x_bottom[1], h - 1], [x_bottom[0], h - 1]], dtype=np.int32
    )
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillConvexPoly(mask, poly, 1)
    out = image.copy()
    region = mask.astype(bool)
    out[region] = (out[region].astype(np.float32) * darkness).astype(np.uint8)
    return out


def flip(image: Image) -> Image:
    return np.ascontiguousarray(image[:, ::-1])


def shift(image: Image, dx: int, dy: int) -> Image:
    h, w = image.shape[:2]
    m = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    return np.asarray(cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE), dtype=np.uint8)


def augment(
    image: Image, steering: float, rng: np.random.Generator, config: AugmentConfig
) -> tuple[Image, float]:
    """Apply a random subset of the configured augmentations; return the image and its steering."""
    out: Any = image
    if config.colour_p and rng.random() < config.colour_p:
        b = rng.uniform(-config.brightness, config.brightness)
        c = rng.uniform(-config.contrast, config.contrast)
        out = brightness_contrast(out, b, c)
    if config.shadow_p and rng.random() < config.shadow_p:
        out = shadow(out, rng, float(rng.uniform(*config.shadow_darkness)))
    if config.blur_p and rng.random() < config.blur_p:
        k = int(rng.integers(1, config.blur_max_kernel // 2 + 1)) * 2 + 1
        out = blur(out, k)
    if config.shift_p and config.shift_px and rng.random() < config.shift_p:
        dx = int(rng.integers(-config.shift_px, config.shift_px + 1))
        dy = int(rng.integers(-config.shift_px, config.shift_px + 1))
        out = shift(out, dx, dy)
        # Seeing the road shifted right means the car sits left of where it was: steer right.
        steering = steering + dx * config.shift_steering_per_px
    if config.flip_p and rng.random() < config.flip_p:
        out = flip(out)
        steering = -steering
    return out, float(np.clip(steering, -1.0, 1.0))
