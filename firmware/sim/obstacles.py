"""Static obstacles (boxes) on the track, placed like DeepRacer's object-avoidance races."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from firmware.sim.track import Track

Lane = Literal["inner", "outer", "center"]


@dataclass(frozen=True, slots=True)
class Obstacle:
    """A box standing on the ground: centre ``(x, y)`` in metres, ``yaw`` in radians."""

    x: float
    y: float
    yaw: float = 0.0
    length: float = 0.25  # along yaw
    width: float = 0.25
    height: float = 0.25

    def __post_init__(self) -> None:
        for name in ("x", "y", "yaw"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"Obstacle.{name} must be finite")
        for name in ("length", "width", "height"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"Obstacle.{name} must be positive, got {value}")

    def corners(self) -> list[tuple[float, float]]:
        """Ground corners, counter-clockwise."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        hl, hw = self.length / 2, self.width / 2
        return [
            (self.x + dx * c - dy * s, self.y + dx * s + dy * c)
            for dx, dy in ((-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw))
        ]


def place_obstacles(
    track: Track,
    progress: Sequence[float],
    lanes: Sequence[Lane] | None = None,
    *,
    size: float = 0.25,
) -> tuple[Obstacle, ...]:
    """Boxes at the given progress percentages (0–100 along the centre line), each in a lane:
    ``"inner"``/``"outer"`` put it halfway between the centre line and that border (DeepRacer's
    lane placement), ``"center"`` on the centre line. Lanes alternate inner/outer by default."""
    out = []
    for i, pct in enumerate(progress):
        if not 0 <= pct <= 100:
            raise ValueError(f"obstacle progress must be in [0, 100], got {pct}")
        lane: Lane = lanes[i] if lanes is not None else ("inner" if i % 2 == 0 else "outer")
        s = pct / 100 * track.length
        x, y = track.point_at(s)
        yaw = track.heading_at(s)
        if lane != "center":
            (ix, iy), (ox, oy) = track.border_points(x, y)
            bx, by = (ix, iy) if lane == "inner" else (ox, oy)
            x, y = (x + bx) / 2, (y + by) / 2
        out.append(Obstacle(x, y, yaw, size, size, size))
    return tuple(out)


def rectangles_overlap(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> bool:
    """Separating-axis test for two convex quadrilaterals given by their corners in order."""
    for poly in (a, b):
        n = len(poly)
        for i in range(n):
            x0, y0 = poly[i]
            x1, y1 = poly[(i + 1) % n]
            ax, ay = y0 - y1, x1 - x0  # edge normal
            pa = [ax * px + ay * py for px, py in a]
            pb = [ax * px + ay * py for px, py in b]
            if max(pa) < min(pb) or max(pb) < min(pa):
                return False
    return True
