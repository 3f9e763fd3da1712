"""A planar lidar: beams ray-cast against the track borders and the obstacles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from firmware.sim.obstacles import Obstacle
from firmware.sim.track import Track


@dataclass(frozen=True, slots=True)
class LidarConfig:
    """Beams spread evenly over ``fov_deg`` around the car's heading, first beam on the right.

    With the default 360° the first beam points straight back and they sweep counter-clockwise.
    A beam that hits nothing within ``max_range`` reads ``max_range``.
    """

    beams: int = 64
    fov_deg: float = 360.0
    min_range: float = 0.05  # m; closer returns read this
    max_range: float = 3.0  # m
    noise_std: float = 0.0  # m, Gaussian range noise drawn from the world's seed
    mount_forward: float = 0.10  # m ahead of the rear axle

    def __post_init__(self) -> None:
        if not 1 <= self.beams <= 4096:
            raise ValueError(f"LidarConfig.beams must be in [1, 4096], got {self.beams}")
        if not 0 < self.fov_deg <= 360:
            raise ValueError(f"LidarConfig.fov_deg must be in (0, 360], got {self.fov_deg}")
        if not 0 <= self.min_range < self.max_range:
            raise ValueError("LidarConfig needs 0 <= min_range < max_range")
        if not self.noise_std >= 0:
            raise ValueError(f"LidarConfig.noise_std must be >= 0, got {self.noise_std}")

    def angles(self) -> NDArray[np.float64]:
        """Beam angles relative to the heading (radians, + = left)."""
        fov = math.radians(self.fov_deg)
        if self.fov_deg >= 360:
            return np.asarray(-math.pi + np.arange(self.beams) * (2 * math.pi / self.beams), np.float64)
        if self.beams == 1:
            return np.zeros(1)
        return np.linspace(-fov / 2, fov / 2, self.beams)


class Lidar:
    def __init__(self, track: Track, config: LidarConfig, obstacles: Sequence[Obstacle] = ()) -> None:
        self.config = config
        self._borders = track.border_segments()
        self._angles = config.angles()
        self.set_obstacles(obstacles)

    def set_obstacles(self, obstacles: Sequence[Obstacle]) -> None:
        """The obstacles the beams hit from now on (bot cars move)."""
        segs = [self._borders]
        for ob in obstacles:
            c = ob.corners()
            segs.append(np.array([[*c[i], *c[(i + 1) % 4]] for i in range(4)], dtype=np.float64))
        self._segs = np.vstack(segs)

    def scan(
        self, x: float, y: float, yaw: float, rng: np.random.Generator | None = None
    ) -> NDArray[np.float32]:
        """Ranges (m) of every beam from the rear-axle pose ``(x, y, yaw)``."""
        c = self.config
        ox = x + c.mount_forward * math.cos(yaw)
        oy = y + c.mount_forward * math.sin(yaw)
        segs = self._segs
        # Only segments that come within reach matter.
        x0, y0, x1, y1 = segs[:, 0], segs[:, 1], segs[:, 2], segs[:, 3]
        dx, dy = x1 - x0, y1 - y0
        len2 = np.maximum(dx * dx + dy * dy, 1e-18)
        t = np.clip(((ox - x0) * dx + (oy - y0) * dy) / len2, 0, 1)
        near = (x0 + t * dx - ox) ** 2 + (y0 + t * dy - oy) ** 2 <= c.max_range**2
        x0, y0, dx, dy = x0[near], y0[near], dx[near], dy[near]
        theta = yaw + self._angles
        rx, ry = np.cos(theta)[:, None], np.sin(theta)[:, None]
        # Solve origin + r·ray = p0 + u·d for r >= 0, u in [0, 1].
        denom = rx * dy - ry * dx
        qx, qy = x0 - ox, y0 - oy
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (qx * dy - qy * dx) / denom
            u = (qx * ry - qy * rx) / denom
        hit = (np.abs(denom) > 1e-12) & (r >= 0) & (u >= 0) & (u <= 1)
        r = np.where(hit, r, np.inf)
        ranges = r.min(axis=1) if r.shape[1] else np.full(len(theta), np.inf)
        if c.noise_std > 0 and rng is not None:
            ranges = ranges + rng.normal(0.0, c.noise_std, size=ranges.shape)
        return np.asarray(np.clip(ranges, c.min_range, c.max_range), dtype=np.float32)
